"""The idempotency store: a key is stored with its response in the same local transaction as the
effect, so a retried request replays the stored response and never applies twice.

A compensation that names the key of its action either finds the action's record (and undoes what
it did) or leaves a tombstone under that key, so an action arriving late is refused, never applied.
"""

import enum
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, func, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from sagaengine.errors import Refusal, error_body

# The longest key a participant takes: the width of the key columns.
MAX_KEY_LENGTH = 200


class Outcome(enum.StrEnum):
    PENDING = "PENDING"  # claimed inside a transaction that has not committed yet
    APPLIED = "APPLIED"
    REFUSED = "REFUSED"  # an answer only: refusals are not stored
    TOMBSTONE = "TOMBSTONE"


class IdempotencyRecordMixin:
    """Columns of the `idempotency_keys` table; each service maps it on its own Base."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The key of the compensation that undid this action: an action is undone at most once.
    reversed_by: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The operation that claimed the key (NULL on a tombstone and on records older than the
    # column): a compensation undoes only an action of the operation it compensates.
    operation: Mapped[str | None] = mapped_column(String(64))


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]
    outcome: Outcome
    replayed: bool = False

    @property
    def applied(self) -> bool:
        return self.outcome is Outcome.APPLIED


class IdempotencyKeyReused(Refusal):
    status_code = 422
    code = "idempotency_key_reused"


class NotThatAction(Refusal):
    """A compensation named the key of an action of another operation: a caller bug, refused
    (changing nothing) rather than undoing what it does not compensate."""

    status_code = 422
    code = "not_that_action"


TOMBSTONE_FINGERPRINT = "tombstone"


def fingerprint(operation: str, request: dict[str, Any]) -> str:
    canonical = json.dumps({"op": operation, "req": request}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _answer_of(record: IdempotencyRecordMixin, *, replayed: bool = False) -> StoredResponse:
    """The answer a committed record holds. Only the transaction that claimed a key sees it
    PENDING, without an answer, and that one never reads it back."""
    assert record.status_code is not None and record.response is not None, record.key
    return StoredResponse(record.status_code, record.response, Outcome(record.outcome), replayed)


class IdempotencyStore:
    def __init__(self, model: type[IdempotencyRecordMixin]):
        self.model = model
        # Test and demo builds only: may raise an injected refusal for an operation.
        self.injected_refusal: Callable[[str], None] | None = None

    def _claim(
        self, session: Session, key: str, operation: str, print_: str
    ) -> StoredResponse | None:
        """Reserve `key` in the open transaction, or return what it recorded before.

        The INSERT waits on a concurrent transaction holding the same key, so two requests with
        one key are serialized by the primary key: exactly one of them runs the operation.
        """
        model = self.model
        claimed = session.execute(
            pg_insert(model)
            .values(key=key, fingerprint=print_, outcome=Outcome.PENDING, operation=operation)
            .on_conflict_do_nothing(index_elements=[model.key])
            .returning(model.key)
        ).scalar_one_or_none()
        if claimed is not None:
            return None
        record = session.execute(select(model).where(model.key == key)).scalar_one()
        if record.outcome != Outcome.TOMBSTONE and record.fingerprint != print_:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was already used for a different request"
            )
        return _answer_of(record, replayed=True)

    def execute(
        self,
        session: Session,
        key: str,
        operation: str,
        request: dict[str, Any],
        apply: Callable[[], tuple[int, dict[str, Any]]],
    ) -> StoredResponse:
        """Run `apply` at most once per key, in one local transaction with its record.

        What applied is stored with its answer, and a retry replays it. A refusal (a `Refusal`
        from `apply`) changed nothing, so nothing is stored: its transaction, the key's claim
        included, rolls back, and a retry is judged afresh. That lets an operator's retry of a
        refused compensation succeed once the cause is fixed; an action refused after an
        attempt of unknown outcome is compensated by its key, which settles any late duplicate.
        """
        try:
            with session.begin():
                stored = self._claim(session, key, operation, fingerprint(operation, request))
                if stored is not None:
                    return stored
                if self.injected_refusal is not None:
                    self.injected_refusal(operation)
                status_code, body = apply()
                session.execute(
                    update(self.model)
                    .where(self.model.key == key)
                    .values(outcome=Outcome.APPLIED, status_code=status_code, response=body)
                )
        except Refusal as refusal:
            return StoredResponse(refusal.status_code, refusal.body(), Outcome.REFUSED)
        return StoredResponse(status_code, body, Outcome.APPLIED)

    def settle_action(self, session: Session, action_key: str) -> StoredResponse | None:
        """For a compensation: the action's record if it ran, else None after a tombstone.

        Call it inside the compensation's transaction. Either the action committed before (its
        record is returned, to be undone if APPLIED), or it never will: the tombstone makes a late
        arrival of that action replay a refusal.
        """
        model = self.model
        placed = session.execute(
            pg_insert(model)
            .values(
                key=action_key,
                fingerprint=TOMBSTONE_FINGERPRINT,
                outcome=Outcome.TOMBSTONE,
                status_code=409,
                response=error_body(
                    "action_compensated",
                    "this operation was compensated before it arrived and will not be applied",
                ),
            )
            .on_conflict_do_nothing(index_elements=[model.key])
            .returning(model.key)
        ).scalar_one_or_none()
        if placed is not None:
            return None
        record = session.execute(select(model).where(model.key == action_key)).scalar_one()
        if record.outcome == Outcome.PENDING:
            # Only the transaction that claimed a key sees it PENDING (any other waits on the
            # INSERT above): a compensation that names its own key names no action that ran.
            return None
        return _answer_of(record)

    def reverse_once(
        self, session: Session, action_key: str, compensation_key: str, operation: str
    ) -> StoredResponse | None:
        """For a compensation of `operation`: the action's record if the action applied and this
        is the first compensation to undo it; None if there is nothing (more) to undo.

        Settles the action first (a tombstone if it never arrived), then claims its reversal, so
        that two compensations under different keys cannot undo one action twice. A key that
        names an action of another operation is refused (`NotThatAction`), changing nothing.
        """
        action = self.settle_action(session, action_key)
        if action is None or not action.applied:
            return None
        model = self.model
        claimed_by = session.execute(
            select(model.operation).where(model.key == action_key)
        ).scalar_one()
        if claimed_by is not None and claimed_by != operation:
            raise NotThatAction(
                f"key {action_key!r} names a {claimed_by!r} operation, not a {operation!r}"
            )
        claimed = session.execute(
            update(self.model)
            .where(self.model.key == action_key, self.model.reversed_by.is_(None))
            .values(reversed_by=compensation_key)
            .returning(self.model.key)
        ).scalar_one_or_none()
        return action if claimed is not None else None
