from fastapi import FastAPI

from common.web import create_service_app
from data_platform.api import router
from data_platform.config import Settings, get_settings
from data_platform.domain import Behaviour


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_service_app(
        title="data platform (mock)",
        settings=settings or get_settings(),
        idempotency=None,  # deliveries are deduplicated by event id
        routers=[router],
    )
    app.state.behaviour = Behaviour()
    return app
