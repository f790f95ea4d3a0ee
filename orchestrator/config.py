import os
import socket
import uuid
from collections.abc import Iterable
from functools import lru_cache

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings
from sagaengine.definition import Participant, RetryPolicy
from sagaengine.outbox import RelayPolicy
from sagaengine.runner import check_leases


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")
    database_name = "saga_orchestrator"
    migrations = "orchestrator"  # its Alembic history, under migrations/

    # Each participant's base URL comes from the setting its declaration names
    # (`Participant.url_setting`, e.g. ORDER_SERVICE_URL): see participant_urls().
    data_platform_url: str = Field("http://127.0.0.1:8009", validation_alias="DATA_PLATFORM_URL")

    # The outbox relay: runs inside this process unless disabled (then: python -m orchestrator
    # relay, as many as you like).
    relay_enabled: bool = True
    relay_batch: int = Field(50, ge=1, le=500)  # events per pass, delivered in one request
    relay_timeout: float = Field(5.0, gt=0)
    relay_claim_seconds: float = Field(30.0, gt=0)
    relay_backoff_initial: float = Field(0.5, gt=0)
    relay_backoff_max: float = Field(30.0, gt=0)
    relay_interval: float = Field(1.0, gt=0)

    # One remote call; past it the outcome is unknown and the call is retried under its key.
    step_timeout: float = Field(5.0, gt=0)
    # Actions: transient faults are retried within this budget, then the saga compensates.
    action_attempts: int = Field(5, ge=1)
    action_max_seconds: float = Field(40.0, gt=0)
    # Compensations: retried longer; past the budget the saga needs an operator.
    compensation_attempts: int = Field(8, ge=1)
    compensation_max_seconds: float = Field(60.0, gt=0)
    backoff_initial: float = Field(0.2, gt=0)
    backoff_max: float = Field(5.0, gt=0)

    # Unique among live replicas. Default: host:port, so a restart of the same replica takes its
    # unfinished sagas back at once instead of waiting for their leases to expire.
    instance_id: str | None = None
    lease_seconds: float = Field(30.0, gt=0)
    # Also how soon another replica resumes the sagas of one that stopped cleanly (its leases
    # released): one cheap claim query per second per replica.
    recovery_interval: float = Field(1.0, gt=0)
    recovery_batch: int = Field(100, ge=1)
    # At most this many sagas run at once in this process; more starts are recorded and wait
    # their turn, and recovery takes over no more than there is room for.
    max_running_sagas: int = Field(64, ge=1)
    max_wait_seconds: float = Field(120.0, gt=0)
    # A second operator token that may only read the admin API and page (its actions get 403).
    admin_viewer_token: str | None = Field(None, validation_alias="ADMIN_VIEWER_TOKEN")

    # Where the admin page links a saga's trace: a URL with `{trace_id}` in it, e.g. Jaeger's
    # http://127.0.0.1:16686/trace/{trace_id} or Grafana's explore URL. Unset: the id alone.
    trace_url: str | None = None

    # As for every process (DB_PREPARED_STATEMENTS); the orchestrator's own name still works.
    db_prepared_statements: bool = Field(
        True,
        validation_alias=AliasChoices(
            "ORCHESTRATOR_DB_PREPARED_STATEMENTS", "DB_PREPARED_STATEMENTS"
        ),
    )

    @model_validator(mode="after")
    def _calls_fit_in_a_lease(self) -> "Settings":
        try:
            check_leases(
                self.lease_seconds,
                self.step_timeout,
                self.action_policy(),
                self.compensation_policy(),
            )
        except ValueError as error:
            raise ValueError(
                f"ORCHESTRATOR_LEASE_SECONDS must exceed ORCHESTRATOR_STEP_TIMEOUT + "
                f"ORCHESTRATOR_BACKOFF_MAX ({error})"
            ) from None
        return self

    @model_validator(mode="after")
    def _viewer_token_is_its_own(self) -> "Settings":
        if self.admin_viewer_token is not None and self.admin_viewer_token in (
            "",
            self.admin_token,
            self.service_token,
        ):
            raise ValueError(
                "ADMIN_VIEWER_TOKEN must be a token of its own, not empty, the ADMIN_TOKEN or "
                "the SERVICE_TOKEN"
            )
        return self

    @model_validator(mode="after")
    def _trace_url_names_the_trace(self) -> "Settings":
        if self.trace_url is not None and "{trace_id}" not in self.trace_url:
            raise ValueError("ORCHESTRATOR_TRACE_URL must contain {trace_id}")
        return self

    @model_validator(mode="after")
    def _relay_pass_fits_in_its_claim(self) -> "Settings":
        # A relay claims a batch and delivers it in one request of up to `relay_timeout`; a
        # claim that expires mid-pass lets another relay take the same events, and deliver them
        # a second time, out of their order.
        if self.relay_timeout >= self.relay_claim_seconds:
            raise ValueError(
                "ORCHESTRATOR_RELAY_CLAIM_SECONDS must exceed ORCHESTRATOR_RELAY_TIMEOUT "
                f"({self.relay_timeout} s)"
            )
        return self

    def resolved_instance_id(self) -> str:
        if self.instance_id:
            return self.instance_id
        suffix = self.port if self.port is not None else f"pid{os.getpid()}-{uuid.uuid4().hex[:6]}"
        return f"{socket.gethostname()}:{suffix}"

    def action_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.action_attempts, self.backoff_initial, self.backoff_max, self.action_max_seconds
        )

    def compensation_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.compensation_attempts,
            self.backoff_initial,
            self.backoff_max,
            self.compensation_max_seconds,
        )

    def trace_link(self, trace_id: str | None) -> str | None:
        """Where a saga's trace is seen (ORCHESTRATOR_TRACE_URL), if it has one."""
        if trace_id is None or self.trace_url is None:
            return None
        return self.trace_url.replace("{trace_id}", trace_id)

    def relay_policy(self) -> RelayPolicy:
        return RelayPolicy(
            batch=self.relay_batch,
            claim_seconds=self.relay_claim_seconds,
            backoff_initial=self.relay_backoff_initial,
            backoff_max=self.relay_backoff_max,
            interval=self.relay_interval,
        )

    def participant_urls(self, participants: Iterable[Participant]) -> dict[str, str]:
        """Each participant's base URL: its setting from the environment, or its default."""
        return {p.name: os.environ.get(p.url_setting, p.default_url) for p in participants}


@lru_cache
def get_settings() -> Settings:
    return Settings()
