"""The subscriptions service: the participant the renewal saga adds, with its own database
(`saga_subscriptions`, migrations/subscriptions/) and the three step endpoints the saga calls.

A subscription is paid through a month. A renewal pays for the next one: reserved (PENDING, at
most one per subscription: the saga's semantic lock), then activated (the subscription is paid
through its month: the pivot) or released (the compensation). Each step runs once per key in the
idempotency store, in one local transaction with its effect.
"""

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common.auth import require_service_token
from common.db import reading
from common.errors import NotFound
from common.fields import Id, Money, PathId
from common.settings import ServiceSettings
from common.web import SessionDep, create_service_app
from examples.subscriptions.models import IdempotencyRecord, Renewal, RenewalStatus, Subscription
from sagaengine.participant import IdempotencyStore, Refusal, StoredResponse
from sagaengine.participant.fastapi import IdempotencyKey, stored_response
from sagaengine.participant.fields import IdempotencyKeyValue

Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2027-01"])]


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SUBSCRIPTIONS_", extra="ignore")
    database_name = "saga_subscriptions"
    migrations = "subscriptions"  # its Alembic history, under migrations/


@lru_cache
def get_settings() -> Settings:
    return Settings()


# -- use cases -------------------------------------------------------------------------------

idempotency = IdempotencyStore(IdempotencyRecord)


def next_month(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year + number // 12}-{number % 12 + 1:02d}"


def _subscription_json(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "user_id": sub.user_id,
        "price": sub.price,
        "paid_through": sub.paid_through,
    }


def _renewal_json(renewal: Renewal, sub: Subscription) -> dict[str, Any]:
    return {
        "id": renewal.id,
        "subscription_id": sub.id,
        "month": renewal.month,
        "status": renewal.status,
        "user_id": sub.user_id,
        "price": sub.price,
    }


def _locked(session: Session, subscription_id: int) -> Subscription:
    sub = session.scalars(
        select(Subscription).where(Subscription.id == subscription_id).with_for_update()
    ).one_or_none()
    if sub is None:
        raise NotFound(f"no subscription {subscription_id}", code="subscription_not_found")
    return sub


def reserve_renewal(session: Session, subscription_id: int, month: str, key: str) -> StoredResponse:
    """Saga action: a PENDING renewal for `month`, the month after the one it is paid through,
    unless another renewal is pending. Answers who pays and how much, read under the lock."""

    def apply() -> tuple[int, dict[str, Any]]:
        sub = _locked(session, subscription_id)
        pending = session.scalar(
            select(Renewal.id).where(
                Renewal.subscription_id == sub.id, Renewal.status == RenewalStatus.PENDING
            )
        )
        if pending is not None or month != next_month(sub.paid_through):
            raise Refusal(
                f"subscription {sub.id} is paid through {sub.paid_through}"
                + (f" and renewal {pending} is pending" if pending else "")
                + f": {month} cannot be renewed now",
                code="subscription_not_renewable",
            )
        renewal = Renewal(subscription_id=sub.id, month=month, status=RenewalStatus.PENDING)
        session.add(renewal)
        session.flush()
        return 200, _renewal_json(renewal, sub)

    request = {"subscription_id": subscription_id, "month": month}
    return idempotency.execute(session, key, "reserve_renewal", request, apply)


def release_renewal(session: Session, reserve_key: str, key: str) -> StoredResponse:
    """Saga compensation of `reserve_renewal`: the reservation released if it was made (once,
    whatever key asks); if it never arrived, a tombstone makes sure it never will."""

    def apply() -> tuple[int, dict[str, Any]]:
        reserved = idempotency.reverse_once(session, reserve_key, key, "reserve_renewal")
        if reserved is None:
            return 200, {"released": False}  # nothing to undo: never a refusal (a tombstone)
        released = session.scalar(
            update(Renewal)
            .where(Renewal.id == reserved.body["id"], Renewal.status == RenewalStatus.PENDING)
            .values(status=RenewalStatus.RELEASED)
            .returning(Renewal.id)
        )
        return 200, {"released": released is not None}

    return idempotency.execute(session, key, "release_renewal", {"reserve_key": reserve_key}, apply)


def activate_renewal(session: Session, renewal_id: int, key: str) -> StoredResponse:
    """Saga pivot: PENDING -> ACTIVE, and the subscription paid through the renewal's month."""

    def apply() -> tuple[int, dict[str, Any]]:
        renewal = session.get(Renewal, renewal_id, with_for_update=True)
        if renewal is None:
            raise NotFound(f"no renewal {renewal_id}", code="renewal_not_found")
        if renewal.status != RenewalStatus.PENDING:
            raise Refusal(f"renewal {renewal_id} is {renewal.status}", code="renewal_not_pending")
        sub = _locked(session, renewal.subscription_id)
        renewal.status, sub.paid_through = RenewalStatus.ACTIVE, renewal.month
        session.flush()
        return 200, _renewal_json(renewal, sub)

    return idempotency.execute(session, key, "activate_renewal", {"renewal_id": renewal_id}, apply)


# -- HTTP ------------------------------------------------------------------------------------


class CreateSubscription(BaseModel):
    user_id: Id
    price: Money
    paid_through: Month


class ReserveRenewal(BaseModel):
    month: Month


class ReleaseRenewal(BaseModel):
    reserve_key: IdempotencyKeyValue


router = APIRouter(tags=["subscriptions"])
# Called by the orchestrator only: a service token, a required Idempotency-Key.
steps = APIRouter(tags=["saga steps"], dependencies=[Depends(require_service_token)])


@router.post("/subscriptions", status_code=201)
def create_subscription(body: CreateSubscription, session: SessionDep) -> dict[str, Any]:
    with session.begin():
        sub = Subscription(**body.model_dump())
        session.add(sub)
        session.flush()
        return _subscription_json(sub)


@router.get("/subscriptions/{subscription_id}")
def get_subscription(subscription_id: PathId, session: SessionDep) -> dict[str, Any]:
    with reading(session):
        sub = session.get(Subscription, subscription_id)
        if sub is None:
            raise NotFound(f"no subscription {subscription_id}", code="subscription_not_found")
        return _subscription_json(sub)


@steps.post("/subscriptions/{subscription_id}/renewals")
def reserve(
    subscription_id: PathId, body: ReserveRenewal, session: SessionDep, key: IdempotencyKey
) -> JSONResponse:
    return stored_response(reserve_renewal(session, subscription_id, body.month, key))


@steps.post("/renewals/release")
def release(body: ReleaseRenewal, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    return stored_response(release_renewal(session, body.reserve_key, key))


@steps.post("/renewals/{renewal_id}/activate")
def activate(renewal_id: PathId, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    return stored_response(activate_renewal(session, renewal_id, key))


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        title="subscriptions service (example)",
        settings=settings or get_settings(),
        idempotency=idempotency,
        routers=[router, steps],
    )
