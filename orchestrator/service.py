"""Use cases of the orchestrator's API beyond a start (`sagaengine.starting`, one path for
every saga): read a saga, retry one an operator looked at."""

from common.errors import DomainError
from sagaengine.definition import SagaStatus
from sagaengine.runner import SagaRunner
from sagaengine.starting import find_saga
from sagaengine.store import SagaState


class SagaNotRetryable(DomainError):
    code = "saga_not_retryable"


async def get_saga(runner: SagaRunner, saga_id: str, *saga_types: str) -> SagaState:
    """The saga of that id (of one of `saga_types`, if given), or 404."""
    return await find_saga(runner, saga_id, *saga_types)


async def retry_saga(runner: SagaRunner, saga_id: str) -> SagaState:
    state = await get_saga(runner, saga_id)
    if state.status is not SagaStatus.NEEDS_ATTENTION or not await runner.retry(state):
        raise SagaNotRetryable(
            f"saga {saga_id} is {state.status}; only NEEDS_ATTENTION can be retried"
        )
    return await get_saga(runner, saga_id)
