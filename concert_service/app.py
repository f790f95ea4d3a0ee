from fastapi import FastAPI

from common.web import create_service_app
from concert_service.api import router, steps
from concert_service.config import Settings, get_settings
from concert_service.service import idempotency


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        title="concert service",
        settings=settings or get_settings(),
        idempotency=idempotency,
        routers=[router, steps],
    )
