"""The example saga of docs/engine.md (examples/subscriptions/saga.py): the calls it builds from
its typed data, what follows each failure, how it starts, its one line of registration, and a
run through every failure point by the test kit."""

from datetime import timedelta

import pytest
from pydantic import ValidationError

from examples.subscriptions import app
from examples.subscriptions.saga import RENEWAL_SAGA, SUBSCRIPTIONS, Renewal, RenewSubscription
from orchestrator.definitions import SAGAS
from sagaengine.decisions import CallOutcome, Position, after_action, after_compensation
from sagaengine.definition import (
    Phase,
    RemoteCall,
    SagaOutcome,
    SagaStatus,
    StepContext,
    StepKind,
    idempotency_key,
)
from sagaengine.testing import explore

SAGA_ID = "0f6b7a52-2a3c-4e1d-9c55-1d2e3f4a5b6c"
STARTED = {"subscription_id": 12, "month": "2027-01"}
RESERVED = {"id": 301, "subscription_id": 12, "user_id": 7, "price": 9_900, "month": "2027-01"}
STEPS = RENEWAL_SAGA.steps
RESERVE, DEDUCT, ACTIVATE = range(3)


def _ctx(index: int, results: dict | None = None) -> StepContext:
    results = {"reserve_renewal": RESERVED} if results is None else results
    return StepContext(
        saga_id=SAGA_ID,
        data=RENEWAL_SAGA.data_of(STARTED, results),
        action_key=idempotency_key(SAGA_ID, STEPS[index], Phase.ACTION),
    )


def test_the_renewal_reserves_takes_the_money_then_activates_as_its_pivot() -> None:
    assert [(s.name, s.kind) for s in STEPS] == [
        ("reserve_renewal", StepKind.COMPENSATABLE),
        ("deduct_balance", StepKind.COMPENSATABLE),
        ("activate_renewal", StepKind.PIVOT),
    ]


def test_reserving_names_the_month_and_nothing_the_caller_could_get_wrong() -> None:
    assert STEPS[RESERVE].action(_ctx(RESERVE, {})) == RemoteCall(
        "subscriptions", "POST", "/subscriptions/12/renewals", {"month": "2027-01"}
    )


def test_releasing_names_the_reservation_key() -> None:
    assert STEPS[RESERVE].compensation(_ctx(RESERVE)) == RemoteCall(
        "subscriptions",
        "POST",
        "/renewals/release",
        {"reserve_key": f"{SAGA_ID}:reserve_renewal:action"},
    )


def test_the_payer_and_the_price_are_learned_from_the_reservation() -> None:
    data = RENEWAL_SAGA.data_of(STARTED, {"reserve_renewal": RESERVED})
    assert (data.renewal_id, data.user_id, data.price) == (301, 7, 9_900)
    assert STEPS[DEDUCT].action(_ctx(DEDUCT)) == RemoteCall(
        "user", "POST", "/users/7/deductions", {"amount": 9_900}
    )


def test_the_charge_back_names_the_deduction_key() -> None:
    assert STEPS[DEDUCT].compensation(_ctx(DEDUCT)) == RemoteCall(
        "user",
        "POST",
        "/users/7/charge-backs",
        {"amount": 9_900, "deduction_key": f"{SAGA_ID}:deduct_balance:action"},
    )


def test_activation_is_settled_at_the_subscriptions_service_by_its_key() -> None:
    ctx = _ctx(ACTIVATE)
    assert STEPS[ACTIVATE].action(ctx) == RemoteCall(
        "subscriptions", "POST", "/renewals/301/activate"
    )
    assert STEPS[ACTIVATE].settle_call(ctx) == RemoteCall(
        "subscriptions", "POST", "/_idempotency/settle", {"key": ctx.action_key}
    )


def test_a_balance_refusal_releases_the_reservation_only() -> None:
    after = after_action(RENEWAL_SAGA, DEDUCT, CallOutcome.REFUSED)
    assert after == Position(SagaStatus.COMPENSATING, RESERVE, Phase.COMPENSATION)
    done = after_compensation(RENEWAL_SAGA, RESERVE, CallOutcome.SUCCEEDED)
    assert done.status is SagaStatus.COMPENSATED


def test_a_refused_activation_gives_the_money_back_then_releases() -> None:
    after = after_action(RENEWAL_SAGA, ACTIVATE, CallOutcome.REFUSED)
    assert after == Position(SagaStatus.COMPENSATING, DEDUCT, Phase.COMPENSATION)
    assert after_compensation(RENEWAL_SAGA, DEDUCT, CallOutcome.SUCCEEDED) == Position(
        SagaStatus.COMPENSATING, RESERVE, Phase.COMPENSATION
    )


def test_one_renewal_per_subscription_and_month() -> None:
    lock = RENEWAL_SAGA.start.lock_key
    january = RENEWAL_SAGA.data_of(STARTED, {})
    february = RENEWAL_SAGA.data_of({**STARTED, "month": "2027-02"}, {})
    assert lock(january) == lock(RENEWAL_SAGA.data_of(STARTED, {}))
    assert lock(january) != lock(february)


@pytest.mark.parametrize(
    "body",
    [
        {"subscription_id": 12, "month": "2027-13"},
        {"subscription_id": 12, "month": "2027-1"},
        {"subscription_id": "12", "month": "2027-01"},
        {"subscription_id": 0, "month": "2027-01"},
        {"month": "2027-01"},
    ],
)
def test_a_start_is_validated_by_its_request_model(body: dict) -> None:
    assert RENEWAL_SAGA.start.request is RenewSubscription
    with pytest.raises(ValidationError):
        RenewSubscription.model_validate(body)


def test_the_first_steps_refusals_refuse_the_start_itself() -> None:
    assert RENEWAL_SAGA.start.refusals == {"subscription_not_found", "subscription_not_renewable"}
    done = RENEWAL_SAGA.start.done
    assert done is not None
    refusal = done(RENEWAL_SAGA.data_of(STARTED, {}))
    assert (refusal.status_code, refusal.code) == (409, "already_renewed")


def test_an_operator_finds_the_renewal_by_subscription_then_user() -> None:
    assert RENEWAL_SAGA.keys(RENEWAL_SAGA.data_of(STARTED, {})) == {
        "subscription_id": 12,
        "user_id": None,
    }
    assert RENEWAL_SAGA.keys(_ctx(DEDUCT).data) == {"subscription_id": 12, "user_id": 7}


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (SagaStatus.COMPLETED, "subscription.renewed"),
        (SagaStatus.COMPENSATED, "subscription.renewal_failed"),
    ],
)
def test_the_outcome_is_told_on_the_subscriptions_aggregate(status: SagaStatus, event: str):
    outcome = SagaOutcome(SAGA_ID, status, _ctx(ACTIVATE).data, None)
    told = RENEWAL_SAGA.outcome_event(outcome)
    assert told is not None
    assert (told.aggregate_id, told.type) == ("subscription:12", event)
    assert told.payload["amount"] == 9_900


def test_a_renewal_stuck_for_ten_minutes_takes_no_money_later() -> None:
    assert RENEWAL_SAGA.deadline == timedelta(minutes=10)


def test_the_example_orchestrator_runs_the_renewal_beside_the_orchestrators_sagas() -> None:
    assert set(app.SAGAS.current) == {*SAGAS.current, "subscription_renewal"}
    assert app.SAGAS.participants["subscriptions"] == SUBSCRIPTIONS
    assert SUBSCRIPTIONS.url_setting == "SUBSCRIPTIONS_SERVICE_URL"


def test_the_renewal_survives_every_failure_point() -> None:
    """Refused, transient, answer lost, out of budget, arriving late, the orchestrator dying
    before and after each call: each action applied at most once, undone exactly when the
    renewal compensates, in reverse order, and nothing past the activation's decision."""
    started = Renewal(subscription_id=12, month="2027-01")
    exploration = explore(RENEWAL_SAGA, started, answers={"reserve_renewal": RESERVED})
    exploration.assert_ok()
    assert {step for step, _ in exploration.points} == {s.name for s in STEPS}
