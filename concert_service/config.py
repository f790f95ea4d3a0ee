from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONCERTS_", extra="ignore")
    database_name = "saga_concerts"
    migrations = "concert_service"  # its Alembic history, under migrations/

    # How long a seat hold lasts; past it, another reservation may take the seat.
    hold_seconds: float = Field(120.0, ge=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
