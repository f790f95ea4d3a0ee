from fastapi import FastAPI

from common.web import create_service_app
from user_service.api import router, steps
from user_service.config import Settings, get_settings
from user_service.service import idempotency


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        title="user service",
        settings=settings or get_settings(),
        idempotency=idempotency,
        routers=[router, steps],
    )
