"""The settings base every process extends with its own env prefix and database name."""

from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432"
# Documented dev values: usable only outside production, and announced at start.
DEV_ADMIN_TOKEN = "dev-admin-token"
DEV_SERVICE_TOKEN = "dev-service-token"


class ServiceSettings(BaseSettings):
    """Shared settings. Fields with a `validation_alias` are read without the service's prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    database_name: ClassVar[str]
    migrations: ClassVar[str]  # the Alembic history of that database, under migrations/

    app_env: Literal["dev", "test", "production"] = Field("dev", validation_alias="APP_ENV")
    pg_url: str = Field(DEFAULT_PG_URL, validation_alias="PG_URL")
    database_url: str | None = None  # <PREFIX>_DATABASE_URL, overrides PG_URL + database_name
    admin_token: str = Field(DEV_ADMIN_TOKEN, validation_alias="ADMIN_TOKEN")
    service_token: str = Field(DEV_SERVICE_TOKEN, validation_alias="SERVICE_TOKEN")
    # Lets tests and demos make this process fail on purpose (POST /_faults). Never in production.
    fault_injection: bool = False
    # Connections per process: PostgreSQL allows 100 by default, shared by every process.
    db_pool_size: int = 5
    db_max_overflow: int = 5
    # Let PostgreSQL prepare repeated statements (psycopg does after a few uses). Turn it off
    # (DB_PREPARED_STATEMENTS=false) behind a pooler that cannot keep them: PgBouncer in
    # transaction mode before 1.21 hands each transaction a server connection of its own.
    db_prepared_statements: bool = Field(True, validation_alias="DB_PREPARED_STATEMENTS")
    # On SIGTERM, how long the process lets what it is doing end (open requests; the
    # orchestrator's calls in flight) before it stops anyway: below Kubernetes' 30 s.
    shutdown_grace_seconds: float = Field(20.0, gt=0)
    port: int | None = None  # set by `python -m <package> --port N`
    host: str = "127.0.0.1"  # set by `python -m <package> --host H`
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> "ServiceSettings":
        if self.app_env != "production":
            return self
        if self.admin_token in ("", DEV_ADMIN_TOKEN) or self.service_token in (
            "",
            DEV_SERVICE_TOKEN,
        ):
            raise ValueError("APP_ENV=production needs ADMIN_TOKEN and SERVICE_TOKEN to be set")
        if self.fault_injection:
            raise ValueError("fault injection cannot be enabled with APP_ENV=production")
        return self

    @property
    def uses_dev_tokens(self) -> bool:
        return self.admin_token == DEV_ADMIN_TOKEN or self.service_token == DEV_SERVICE_TOKEN

    @property
    def sqlalchemy_url(self) -> URL:
        """The process's own database, with the psycopg 3 driver."""
        if self.database_url:
            url = make_url(self.database_url)
        else:
            url = make_url(self.pg_url).set(database=self.database_name)
        return url.set(drivername="postgresql+psycopg")
