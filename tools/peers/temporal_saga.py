"""The payment saga as a Temporal workflow: our state machine (`tools.peers.payment`), each remote
call one activity (`remote_call`, registered by `tools.peers.temporal_app`), retried by Temporal
within our budgets: a transient fault fails the attempt (retried under the same key), a business
refusal is the activity's result, final. The last activity delivers the outcome event.

Its own module, free of the app's imports, because Temporal's sandbox re-imports a workflow's
module for every run; what it needs from outside is passed through the sandbox.
"""

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from sagaengine.decisions import CallOutcome
    from tools.peers.payment import CallResult, CallSpec, SagaResult, run_payment_saga

TASK_QUEUE = "payment-saga"
ACTIVITY = "remote_call"
TRANSIENT = "TransientFault"  # the ApplicationError type of an attempt to retry


@workflow.defn(name="PaymentSaga")
class PaymentSaga:
    @workflow.run
    async def run(
        self, order_id: int, order: dict[str, Any], budgets: dict[str, Any]
    ) -> SagaResult:
        """`order`: the order as the front read it. `budgets`: `tools.peers.payment.budgets`,
        the orchestrator's timeouts and budgets."""

        async def execute(call: CallSpec) -> CallResult:
            budget = budgets[call["policy"]]
            try:
                return await workflow.execute_activity(
                    ACTIVITY,
                    call,
                    result_type=dict,
                    # One attempt: one call (its client timeout, and a margin).
                    start_to_close_timeout=timedelta(seconds=budgets["step_timeout"] + 1),
                    # Every attempt: the budget, and one call begun at its end.
                    schedule_to_close_timeout=timedelta(
                        seconds=budget["max_seconds"] + budgets["step_timeout"]
                    ),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=budget["initial_backoff"]),
                        backoff_coefficient=2.0,
                        maximum_interval=timedelta(seconds=budget["max_backoff"]),
                        maximum_attempts=budget["attempts"],
                    ),
                )
            except ActivityError as exc:
                # Out of attempts or time: the call's outcome is unknown.
                cause = exc.cause
                if isinstance(cause, ApplicationError) and cause.details:
                    error = cause.details[0]
                else:
                    error = {"code": "timeout", "message": str(cause or exc), "status_code": None}
                return CallResult(outcome=CallOutcome.EXHAUSTED, response=None, error=error)

        return await run_payment_saga(
            workflow.info().workflow_id, order_id, order, execute, workflow.now
        )
