"""An operator's action that was taken stands even when its audit line cannot be written: the
failure is an ERROR log line holding what the trail would have held, not a 5xx."""

import logging

import pytest

from common.auth import Role
from orchestrator import service

pytestmark = pytest.mark.anyio


class _DeadTrail:
    async def record(self, **_: object) -> None:
        raise ConnectionError("the orchestrator's database went away")


async def test_an_unwritable_trail_is_logged_with_the_whole_action(caplog):
    with caplog.at_level(logging.INFO, logger="orchestrator.service"):
        await service._record(_DeadTrail(), Role.ADMIN, "cancel", "saga-1", "why", "accepted")  # type: ignore[arg-type]

    [line] = caplog.records
    assert line.levelno == logging.ERROR
    assert line.getMessage().startswith("audit trail not written; operator (admin) cancel of saga")
    assert "'why'" in line.getMessage() and line.getMessage().endswith(": accepted")
    assert line.exc_info is not None
