"""Renewing a subscription for one more month: reserve the renewal, take the price from the user's
balance, activate the renewal (the pivot).

| # | step             | service       | action                            | compensation          |
|---|------------------|---------------|-----------------------------------|-----------------------|
| 1 | reserve_renewal  | subscriptions | a PENDING renewal for the month   | release it            |
| 2 | deduct_balance   | user          | balance -= price                  | charge the price back |
| 3 | activate_renewal | subscriptions | ACTIVE: paid through that month   | none: the pivot       |

The price and the payer are the subscription's own, read by step 1 under the subscription's lock
(one PENDING renewal per subscription), not taken from the caller. Step 2 is the orchestrator's
own money step (`orchestrator.money_steps`), reused as is. A renewal names its month, so that a
request sent twice renews once: the month is part of the saga's lock key.
"""

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, Field

from common.fields import Id
from orchestrator.money_steps import deduct_balance_step
from orchestrator.participants import USER
from sagaengine.definition import (
    OutcomeEvent,
    Participant,
    RemoteCall,
    SagaDefinition,
    SagaOutcome,
    SagaStatus,
    StartRules,
    Step,
    StepContext,
    StepKind,
)
from sagaengine.errors import Refusal

SUBSCRIPTIONS = Participant("subscriptions", "SUBSCRIPTIONS_SERVICE_URL", "http://127.0.0.1:8005")

Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2027-01"])]


class RenewSubscription(BaseModel):
    """`POST /sagas/subscription_renewal`: pay one more month of a subscription."""

    subscription_id: Id
    month: Month  # the month it pays for: the one after the month it is paid through


class Renewal(BaseModel):
    subscription_id: int
    month: str
    # Read by step 1 under the subscription's lock.
    renewal_id: int | None = None
    user_id: int | None = None
    price: int | None = None

    def money(self) -> tuple[int, int]:
        assert self.user_id is not None and self.price is not None, "step 1 reads them"
        return self.user_id, self.price


Ctx = StepContext[Renewal]


def reserve_renewal(ctx: Ctx) -> RemoteCall:
    body = {"month": ctx.data.month}
    return SUBSCRIPTIONS.post(f"/subscriptions/{ctx.data.subscription_id}/renewals", body)


def release_renewal(ctx: Ctx) -> RemoteCall:
    return SUBSCRIPTIONS.post("/renewals/release", {"reserve_key": ctx.action_key})


def learn_renewal(data: Renewal, renewal: Mapping[str, Any]) -> Renewal:
    update = {k: renewal[k] for k in ("user_id", "price")} | {"renewal_id": renewal["id"]}
    return data.model_copy(update=update)


def activate_renewal(ctx: Ctx) -> RemoteCall:
    return SUBSCRIPTIONS.post(f"/renewals/{ctx.data.renewal_id}/activate")


def keys(data: Renewal) -> dict[str, Any]:
    return {"subscription_id": data.subscription_id, "user_id": data.user_id}


def outcome_event(outcome: SagaOutcome[Renewal]) -> OutcomeEvent:
    """`subscription.renewed`, or `subscription.renewal_failed` with the reason."""
    data = outcome.data
    payload = {"saga_id": outcome.saga_id, **data.model_dump(), "amount": data.price}
    aggregate = f"subscription:{data.subscription_id}"
    if outcome.status is SagaStatus.COMPLETED:
        return OutcomeEvent(aggregate, "subscription.renewed", payload)
    reason = dict(outcome.error) if outcome.error else None
    return OutcomeEvent(aggregate, "subscription.renewal_failed", {**payload, "reason": reason})


def already_renewed(data: Renewal) -> Refusal:
    return Refusal(
        f"subscription {data.subscription_id} is renewed for {data.month} already",
        code="already_renewed",
    )


RENEWAL_SAGA = SagaDefinition(
    name="subscription_renewal",
    version=1,
    data=Renewal,
    participants=(SUBSCRIPTIONS, USER),
    steps=(
        Step("reserve_renewal", reserve_renewal, release_renewal, learn=learn_renewal),
        deduct_balance_step(Renewal.money),
        Step("activate_renewal", activate_renewal, kind=StepKind.PIVOT),
    ),
    start=StartRules(
        request=RenewSubscription,
        # One renewal per subscription and month: a second request for that month is the same
        # renewal (or, once it completed, refused: `done`).
        lock_key=lambda data: f"subscription:{data.subscription_id}:month:{data.month}",
        # Step 1 is the start's check: no such subscription, or not renewable for that month.
        refusals=frozenset({"subscription_not_found", "subscription_not_renewable"}),
        busy="renewal_in_progress",
        done=already_renewed,
    ),
    keys=keys,
    outcome_event=outcome_event,
    # A renewal that has not gone through in ten minutes takes no money later: it compensates.
    deadline=timedelta(minutes=10),
)
