"""The saga engine's pure core (sagaengine/definition.py, decisions.py), checked exhaustively.

Every status pair against the transition table, every step of the payment saga against every
call outcome, and the call each step of the payment saga builds.
"""

import itertools
from dataclasses import replace

import pytest
from pydantic import BaseModel

from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.decisions import (
    TRANSITIONS,
    CallOutcome,
    IllegalSagaTransition,
    Position,
    after_action,
    after_compensation,
    check_transition,
    resume_after_attention,
)
from sagaengine.definition import (
    FINAL_STATUSES,
    Phase,
    RemoteCall,
    SagaDefinition,
    SagaStatus,
    StartRules,
    Step,
    StepContext,
    StepKind,
    idempotency_key,
)

S = SagaStatus

# The legal moves, written out independently of the module so that a change to the table fails.
LEGAL = {
    (S.RUNNING, S.RUNNING),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.COMPENSATING),
    (S.RUNNING, S.COMPENSATED),
    (S.RUNNING, S.NEEDS_ATTENTION),
    (S.COMPENSATING, S.COMPENSATING),
    (S.COMPENSATING, S.COMPENSATED),
    (S.COMPENSATING, S.NEEDS_ATTENTION),
    (S.NEEDS_ATTENTION, S.RUNNING),
    (S.NEEDS_ATTENTION, S.COMPENSATING),
}
ALL_PAIRS = list(itertools.product(SagaStatus, SagaStatus))

STEPS = PAYMENT_SAGA.steps
PIVOT = next(i for i, s in enumerate(STEPS) if s.kind is StepKind.PIVOT)
COMPENSATABLE = [i for i, s in enumerate(STEPS) if s.kind is StepKind.COMPENSATABLE]


def _call(name: str):
    def build(ctx: StepContext) -> RemoteCall:
        return RemoteCall("svc", "POST", f"/{name}")

    return build


def _step(name: str, kind: StepKind = StepKind.COMPENSATABLE) -> Step:
    if kind is StepKind.COMPENSATABLE:
        return Step(name, _call(name), _call(f"undo-{name}"))
    return Step(name, _call(name), kind=kind)


class Nothing(BaseModel):
    pass


def _definition(name: str, steps: tuple[Step, ...]) -> SagaDefinition:
    return SagaDefinition(name, 1, Nothing, steps, StartRules(lock_key=lambda _: f"{name}:the-one"))


# Compensatable steps, the pivot, then a step that is retried forward only.
WITH_TAIL = _definition(
    "tail",
    (_step("a"), _step("b"), _step("p", StepKind.PIVOT), _step("r", StepKind.RETRIABLE)),
)


# --- the status machine -------------------------------------------------------------------------


def test_transition_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(SagaStatus)


@pytest.mark.parametrize(("current", "new"), sorted(LEGAL))
def test_allows_legal_transition(current: SagaStatus, new: SagaStatus) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(("current", "new"), [p for p in ALL_PAIRS if p not in LEGAL])
def test_refuses_illegal_transition(current: SagaStatus, new: SagaStatus) -> None:
    with pytest.raises(IllegalSagaTransition):
        check_transition(current, new)


def test_final_statuses_are_completed_and_compensated() -> None:
    assert frozenset({S.COMPLETED, S.COMPENSATED}) == FINAL_STATUSES


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
@pytest.mark.parametrize("new", list(SagaStatus))
def test_final_status_has_no_exit(final: SagaStatus, new: SagaStatus) -> None:
    assert TRANSITIONS[final] == frozenset()
    with pytest.raises(IllegalSagaTransition):
        check_transition(final, new)


# --- after an action ----------------------------------------------------------------------------


def test_payment_saga_has_three_compensatable_steps_then_the_pivot() -> None:
    assert [s.name for s in STEPS] == [
        "start_order_payment",
        "deduct_balance",
        "approve_payment",
        "complete_order_payment",
    ]
    assert COMPENSATABLE == [0, 1, 2]
    assert PIVOT == 3
    assert STEPS[PIVOT].compensation is None
    assert STEPS[PIVOT].settle is None  # settled at its participant's settle endpoint


@pytest.mark.parametrize("index", COMPENSATABLE)
def test_success_before_the_pivot_runs_the_next_action(index: int) -> None:
    assert after_action(PAYMENT_SAGA, index, CallOutcome.SUCCEEDED) == Position(
        S.RUNNING, index + 1, Phase.ACTION
    )


def test_success_of_the_pivot_completes_the_saga() -> None:
    assert after_action(PAYMENT_SAGA, PIVOT, CallOutcome.SUCCEEDED) == Position(
        S.COMPLETED, PIVOT + 1, Phase.ACTION
    )


def test_success_of_the_last_step_completes_a_saga_without_pivot() -> None:
    saga = _definition("plain", (_step("a"), _step("b")))
    assert after_action(saga, 1, CallOutcome.SUCCEEDED) == Position(S.COMPLETED, 2, Phase.ACTION)


def test_refusal_of_the_first_action_compensates_nothing() -> None:
    assert after_action(PAYMENT_SAGA, 0, CallOutcome.REFUSED) == Position(
        S.COMPENSATED, -1, Phase.COMPENSATION
    )


@pytest.mark.parametrize("index", range(1, len(STEPS)))
def test_refusal_compensates_from_the_previous_step(index: int) -> None:
    # Every step before the pivot has a compensation, so the nearest one is index - 1.
    assert after_action(PAYMENT_SAGA, index, CallOutcome.REFUSED) == Position(
        S.COMPENSATING, index - 1, Phase.COMPENSATION
    )


@pytest.mark.parametrize("index", COMPENSATABLE)
def test_exhausted_action_is_compensated_itself_first(index: int) -> None:
    # Its outcome is unknown: its own compensation undoes it or leaves a tombstone.
    assert after_action(PAYMENT_SAGA, index, CallOutcome.EXHAUSTED) == Position(
        S.COMPENSATING, index, Phase.COMPENSATION
    )


def test_exhausted_pivot_must_be_settled_before_deciding() -> None:
    with pytest.raises(ValueError):
        after_action(PAYMENT_SAGA, PIVOT, CallOutcome.EXHAUSTED)


def test_success_of_the_pivot_moves_on_to_the_steps_after_it() -> None:
    assert after_action(WITH_TAIL, 2, CallOutcome.SUCCEEDED) == Position(S.RUNNING, 3, Phase.ACTION)
    assert after_action(WITH_TAIL, 3, CallOutcome.SUCCEEDED) == Position(
        S.COMPLETED, 4, Phase.ACTION
    )


@pytest.mark.parametrize("outcome", [CallOutcome.REFUSED, CallOutcome.EXHAUSTED])
def test_failure_after_the_pivot_needs_attention_and_compensates_nothing(
    outcome: CallOutcome,
) -> None:
    stuck = after_action(WITH_TAIL, 3, outcome)
    assert stuck == Position(S.NEEDS_ATTENTION, 3, Phase.ACTION)
    assert resume_after_attention(stuck) == Position(S.RUNNING, 3, Phase.ACTION)


def test_refusal_of_a_pivot_with_a_tail_compensates_the_steps_before_it() -> None:
    assert after_action(WITH_TAIL, 2, CallOutcome.REFUSED) == Position(
        S.COMPENSATING, 1, Phase.COMPENSATION
    )


# --- after a compensation -----------------------------------------------------------------------


@pytest.mark.parametrize("index", [i for i in COMPENSATABLE if i > 0])
def test_successful_compensation_walks_down_to_the_previous_step(index: int) -> None:
    assert after_compensation(PAYMENT_SAGA, index, CallOutcome.SUCCEEDED) == Position(
        S.COMPENSATING, index - 1, Phase.COMPENSATION
    )


def test_successful_compensation_of_the_first_step_finishes_compensated() -> None:
    assert after_compensation(PAYMENT_SAGA, 0, CallOutcome.SUCCEEDED) == Position(
        S.COMPENSATED, -1, Phase.COMPENSATION
    )


def test_compensations_run_in_reverse_order_down_to_compensated() -> None:
    position = after_action(PAYMENT_SAGA, PIVOT, CallOutcome.REFUSED)
    visited = []
    while position.status is S.COMPENSATING:
        visited.append(STEPS[position.step].name)
        position = after_compensation(PAYMENT_SAGA, position.step, CallOutcome.SUCCEEDED)
    assert visited == ["approve_payment", "deduct_balance", "start_order_payment"]
    assert position.status is S.COMPENSATED


@pytest.mark.parametrize("outcome", [CallOutcome.REFUSED, CallOutcome.EXHAUSTED])
@pytest.mark.parametrize("index", COMPENSATABLE)
def test_failed_compensation_needs_attention_at_the_same_step(
    index: int, outcome: CallOutcome
) -> None:
    assert after_compensation(PAYMENT_SAGA, index, outcome) == Position(
        S.NEEDS_ATTENTION, index, Phase.COMPENSATION
    )


@pytest.mark.parametrize(
    ("index", "outcome"),
    [
        (index, outcome)
        for index in range(len(STEPS))
        for outcome in CallOutcome
        # An exhausted pivot is settled before anything is decided (tested above).
        if not (index == PIVOT and outcome is CallOutcome.EXHAUSTED)
    ],
)
def test_every_decision_after_an_action_is_a_legal_transition(
    index: int, outcome: CallOutcome
) -> None:
    check_transition(S.RUNNING, after_action(PAYMENT_SAGA, index, outcome).status)


@pytest.mark.parametrize("outcome", list(CallOutcome))
@pytest.mark.parametrize("index", COMPENSATABLE)
def test_every_decision_after_a_compensation_is_a_legal_transition(
    index: int, outcome: CallOutcome
) -> None:
    check_transition(S.COMPENSATING, after_compensation(PAYMENT_SAGA, index, outcome).status)


# --- an operator's retry ------------------------------------------------------------------------


@pytest.mark.parametrize("index", COMPENSATABLE)
def test_retry_resumes_a_stuck_compensation_at_the_same_step(index: int) -> None:
    stuck = after_compensation(PAYMENT_SAGA, index, CallOutcome.EXHAUSTED)
    resumed = resume_after_attention(stuck)
    assert resumed == Position(S.COMPENSATING, index, Phase.COMPENSATION)
    check_transition(stuck.status, resumed.status)


def test_retry_resumes_a_stuck_action_running() -> None:
    stuck = Position(S.NEEDS_ATTENTION, PIVOT, Phase.ACTION)
    resumed = resume_after_attention(stuck)
    assert resumed == Position(S.RUNNING, PIVOT, Phase.ACTION)
    check_transition(stuck.status, resumed.status)


# --- definitions --------------------------------------------------------------------------------


def test_refuses_definition_with_two_pivots() -> None:
    with pytest.raises(ValueError, match="more than one pivot"):
        _definition("bad", (_step("a"), _step("p1", StepKind.PIVOT), _step("p2", StepKind.PIVOT)))


def test_refuses_compensatable_step_without_compensation() -> None:
    with pytest.raises(ValueError, match="no compensation"):
        _definition("bad", (Step("a", _call("a")),))


def test_refuses_definition_without_steps() -> None:
    with pytest.raises(ValueError):
        _definition("bad", ())


def test_refuses_two_steps_of_one_name() -> None:
    # Their idempotency keys would collide.
    with pytest.raises(ValueError):
        _definition("bad", (_step("a"), _step("a")))


@pytest.mark.parametrize(
    "steps",
    [
        (_step("r", StepKind.RETRIABLE), _step("p", StepKind.PIVOT)),
        (_step("p", StepKind.PIVOT), _step("a")),
        (_step("a"), _step("r", StepKind.RETRIABLE)),
    ],
    ids=["retriable-before-pivot", "compensatable-after-pivot", "retriable-without-pivot"],
)
def test_refuses_steps_out_of_order_around_the_pivot(steps: tuple[Step, ...]) -> None:
    with pytest.raises(ValueError):
        _definition("bad", steps)


@pytest.mark.parametrize("kind", [StepKind.PIVOT, StepKind.RETRIABLE])
def test_refuses_a_compensation_past_the_point_of_no_return(kind: StepKind) -> None:
    late = Step("late", _call("late"), _call("undo-late"), kind=kind)
    steps = (_step("a"), late) if kind is StepKind.PIVOT else (_step("p", StepKind.PIVOT), late)
    with pytest.raises(ValueError):
        _definition("bad", steps)


def test_accepts_compensatable_steps_a_pivot_and_retriable_steps() -> None:
    assert WITH_TAIL.key == ("tail", 1)
    assert replace(_definition("no-pivot", (_step("a"), _step("b"))), version=2).key == (
        "no-pivot",
        2,
    )


# --- idempotency keys ---------------------------------------------------------------------------


def test_idempotency_key_is_stable_for_a_saga_step_and_phase() -> None:
    step = STEPS[1]
    first = idempotency_key("saga-1", step, Phase.ACTION)
    assert first == idempotency_key("saga-1", step, Phase.ACTION)
    assert first == idempotency_key("saga-1", Step(step.name, _call("x"), _call("y")), Phase.ACTION)


def test_idempotency_keys_differ_across_steps_phases_and_sagas() -> None:
    keys = [
        idempotency_key(saga_id, step, phase)
        for saga_id in ("saga-1", "saga-2")
        for step in STEPS
        for phase in Phase
    ]
    assert len(set(keys)) == len(keys)


def test_idempotency_keys_fit_the_services_limit() -> None:
    saga_id = "0" * 36  # a UUID's length
    assert all(len(idempotency_key(saga_id, s, p)) <= 200 for s in STEPS for p in Phase)


# --- the payment saga's calls -------------------------------------------------------------------

SAGA_ID = "5b0c1f4e-8f0e-4a55-9a43-6f4d3b9a2c11"
ORDER = {"id": 41, "user_id": 7, "amount": 12_500, "status": "PAYMENT_IN_PROGRESS", "items": []}


def _ctx(step_index: int) -> StepContext:
    return StepContext(
        saga_id=SAGA_ID,
        data=PAYMENT_SAGA.data_of({"order_id": 41}, {"start_order_payment": ORDER}),
        action_key=idempotency_key(SAGA_ID, STEPS[step_index], Phase.ACTION),
    )


def test_start_order_payment_locks_the_order() -> None:
    assert STEPS[0].action(_ctx(0)) == RemoteCall("order", "POST", "/orders/41/payment-start")


def test_release_order_names_the_start_key() -> None:
    assert STEPS[0].compensation(_ctx(0)) == RemoteCall(
        "order",
        "POST",
        "/orders/41/payment-release",
        {"start_key": f"{SAGA_ID}:start_order_payment:action"},
    )


def test_deduct_balance_takes_user_and_amount_from_the_locked_order() -> None:
    assert STEPS[1].action(_ctx(1)) == RemoteCall(
        "user", "POST", "/users/7/deductions", {"amount": 12_500}
    )


def test_charge_back_names_the_deduction_key() -> None:
    assert STEPS[1].compensation(_ctx(1)) == RemoteCall(
        "user",
        "POST",
        "/users/7/charge-backs",
        {"amount": 12_500, "deduction_key": f"{SAGA_ID}:deduct_balance:action"},
    )


def test_approve_payment_carries_order_user_and_amount() -> None:
    assert STEPS[2].action(_ctx(2)) == RemoteCall(
        "payment", "POST", "/payments", {"order_id": 41, "user_id": 7, "amount": 12_500}
    )


def test_cancel_payment_names_the_approval_key() -> None:
    assert STEPS[2].compensation(_ctx(2)) == RemoteCall(
        "payment",
        "POST",
        "/payments/cancellations",
        {"approval_key": f"{SAGA_ID}:approve_payment:action"},
    )


def test_complete_order_payment_marks_the_order_paid() -> None:
    assert STEPS[PIVOT].action(_ctx(PIVOT)) == RemoteCall(
        "order", "POST", "/orders/41/payment-complete"
    )


def test_settling_the_pivot_asks_about_its_action_key() -> None:
    assert STEPS[PIVOT].settle_call(_ctx(PIVOT)) == RemoteCall(
        "order",
        "POST",
        "/_idempotency/settle",
        {"key": f"{SAGA_ID}:complete_order_payment:action"},
    )


@pytest.mark.parametrize("index", COMPENSATABLE)
def test_each_compensation_refers_to_its_own_action_key(index: int) -> None:
    ctx = _ctx(index)
    body = STEPS[index].compensation(ctx).body
    assert body is not None
    assert list(body.values()).count(ctx.action_key) == 1
    other_keys = {idempotency_key(SAGA_ID, s, p) for s in STEPS for p in Phase} - {ctx.action_key}
    assert not other_keys & set(body.values())


def test_the_payment_saga_is_found_by_its_order_and_then_its_user() -> None:
    started = PAYMENT_SAGA.data_of({"order_id": 41}, {})
    locked = PAYMENT_SAGA.data_of({"order_id": 41}, {"start_order_payment": ORDER})
    assert PAYMENT_SAGA.keys(started) == {"order_id": 41, "user_id": None}
    assert PAYMENT_SAGA.keys(locked) == {"order_id": 41, "user_id": 7}


def test_a_step_name_cannot_hold_the_key_separator() -> None:
    with pytest.raises(ValueError, match="':'"):
        _definition("bad", (_step("a:b"),))
