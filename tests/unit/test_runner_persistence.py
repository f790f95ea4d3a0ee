"""A saga run's writes while its database is away: tried again on a fresh connection, with
backoff, for as long as a lease lasts; told when an earlier try may have committed unseen."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from sagaengine.definition import RetryPolicy
from sagaengine.runner import SagaRunner
from sagaengine.store import Owner

POLICY = RetryPolicy(attempts=1, initial_backoff=0.1, max_backoff=0.1, max_seconds=1)


class _Store:
    def __init__(self, lease_seconds: float):
        self.lease = timedelta(seconds=lease_seconds)


def _runner(lease_seconds: float = 30) -> SagaRunner:
    return SagaRunner(
        _Store(lease_seconds),
        {},
        owner=Owner.new("persistence-test"),
        step_timeout=0.1,
        action_policy=POLICY,
        compensation_policy=POLICY,
        definitions={},
    )


def _down() -> OperationalError:
    return OperationalError("INSERT ...", {}, Exception("server closed the connection"))


def test_a_write_is_tried_again_until_the_database_answers_and_told_it_may_have_applied():
    tries: list[bool] = []

    async def write(again: bool) -> str:
        tries.append(again)
        if len(tries) < 3:
            raise _down()
        return "written"

    assert asyncio.run(_runner()._persisted(write)) == "written"
    assert tries == [False, True, True]


def test_a_write_refused_by_the_database_is_not_tried_again():
    tries: list[bool] = []

    async def write(again: bool) -> None:
        tries.append(again)
        raise IntegrityError("INSERT ...", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        asyncio.run(_runner()._persisted(write))
    assert tries == [False]


def test_past_a_lease_the_run_gives_the_saga_up_to_recovery():
    tries: list[bool] = []

    async def write(again: bool) -> None:
        tries.append(again)
        raise _down()

    with pytest.raises(OperationalError):
        asyncio.run(_runner(lease_seconds=0.5)._persisted(write))
    assert 2 <= len(tries) < 20
