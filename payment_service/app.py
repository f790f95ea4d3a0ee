from fastapi import FastAPI

from common.web import create_service_app
from payment_service.api import router, steps
from payment_service.config import Settings, get_settings
from payment_service.service import idempotency


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        title="payment service",
        settings=settings or get_settings(),
        idempotency=idempotency,
        routers=[router, steps],
    )
