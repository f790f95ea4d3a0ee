"""The saga test kit's model participants (`sagaengine.testing.ModelParticipants`) keep the
participant kit's promises: an action's answer replayed under its key, a compensation that
undoes its action once or tombstones it, and the settle route's answer."""

from dataclasses import replace

import pytest

from sagaengine.definition import SETTLE_PATH, Phase, RemoteCall, step_key
from sagaengine.http import BusinessRefusal
from sagaengine.testing import Effect, ModelParticipants

# -- the model participants ------------------------------------------------------------------

KEY = step_key("saga-1", "book_hotel", Phase.ACTION)
UNDO_KEY = step_key("saga-1", "book_hotel", Phase.COMPENSATION)
BOOK = RemoteCall("hotel", "POST", "/bookings", {"trip": 1})
CANCEL = RemoteCall("hotel", "POST", "/bookings/cancellations", {"action_key": KEY})


def test_an_action_applies_once_and_its_retry_replays_the_answer():
    model = ModelParticipants({"book_hotel": {"booking": "H-1"}})

    first, again = model.receive(BOOK, KEY), model.receive(BOOK, KEY)

    assert first == again == {"booking": "H-1"}
    assert model.ledger[KEY].applied == 1
    assert [a.effect for a in model.arrivals] == [Effect.APPLIED, Effect.REPLAYED]


def test_a_compensation_undoes_its_action_once_however_often_it_is_sent():
    model = ModelParticipants()
    model.receive(BOOK, KEY)

    model.receive(CANCEL, UNDO_KEY)
    model.receive(CANCEL, UNDO_KEY)

    assert (model.ledger[KEY].applied, model.ledger[KEY].undone) == (1, 1)


def test_a_compensation_before_its_action_leaves_a_tombstone_that_refuses_it():
    model = ModelParticipants()

    model.receive(CANCEL, UNDO_KEY)
    with pytest.raises(BusinessRefusal) as refused:
        model.receive(BOOK, KEY)

    assert refused.value.code == "action_compensated"
    assert model.ledger[KEY].applied == 0 and model.ledger[KEY].tombstoned


def test_settle_answers_as_the_kits_settle_route_and_tombstones_what_never_came():
    model = ModelParticipants({"book_hotel": {"booking": "H-1"}})
    settle = RemoteCall("hotel", "POST", SETTLE_PATH, {"key": KEY})
    other = step_key("saga-2", "book_hotel", Phase.ACTION)

    model.receive(BOOK, KEY)
    applied = model.receive(settle, None)
    never = model.receive(replace(settle, body={"key": other}), None)

    assert applied == {
        "key": KEY,
        "outcome": "APPLIED",
        "status_code": 200,
        "response": {"booking": "H-1"},
    }
    assert never == {"key": other, "outcome": "TOMBSTONE", "status_code": None, "response": None}
    with pytest.raises(BusinessRefusal):
        model.receive(BOOK, other)


def test_a_compensation_sent_to_another_service_than_its_action_undoes_nothing():
    model = ModelParticipants()
    model.receive(BOOK, KEY)

    model.receive(replace(CANCEL, service="airline"), UNDO_KEY)

    assert model.ledger[KEY].undone == 0
