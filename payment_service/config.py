from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", extra="ignore")
    database_name = "saga_payments"
    migrations = "payment_service"  # its Alembic history, under migrations/


@lru_cache
def get_settings() -> Settings:
    return Settings()
