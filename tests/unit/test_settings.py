"""Settings refuse what would be unsafe, instead of running with it."""

import pytest
from pydantic import ValidationError

from orchestrator.config import Settings as OrchestratorSettings
from order_service.config import Settings as OrderSettings


def test_production_refuses_to_start_with_the_dev_tokens(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("SERVICE_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="ADMIN_TOKEN and SERVICE_TOKEN"):
        OrderSettings()


def test_production_refuses_fault_injection(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("ADMIN_TOKEN", "a-real-admin-secret")
    monkeypatch.setenv("SERVICE_TOKEN", "a-real-service-secret")
    monkeypatch.setenv("ORDERS_FAULT_INJECTION", "true")
    with pytest.raises(ValidationError, match="fault injection"):
        OrderSettings()


def test_production_starts_with_real_tokens_and_no_faults(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("ADMIN_TOKEN", "a-real-admin-secret")
    monkeypatch.setenv("SERVICE_TOKEN", "a-real-service-secret")
    monkeypatch.setenv("ORDERS_FAULT_INJECTION", "false")
    settings = OrderSettings()
    assert (settings.app_env, settings.fault_injection) == ("production", False)
    assert not settings.uses_dev_tokens


def test_fault_injection_is_off_by_default(monkeypatch):
    monkeypatch.delenv("ORDERS_FAULT_INJECTION", raising=False)
    assert OrderSettings().fault_injection is False


def test_the_orchestrator_refuses_calls_that_outlast_a_lease(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_STEP_TIMEOUT", "25")
    monkeypatch.setenv("ORCHESTRATOR_BACKOFF_MAX", "5")
    monkeypatch.setenv("ORCHESTRATOR_LEASE_SECONDS", "30")
    with pytest.raises(ValidationError, match="LEASE_SECONDS"):
        OrchestratorSettings()


def test_the_orchestrator_refuses_a_relay_pass_that_outlasts_its_claim(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_RELAY_TIMEOUT", "5")
    monkeypatch.setenv("ORCHESTRATOR_RELAY_CLAIM_SECONDS", "5")  # a pass's delivery may take 5 s
    with pytest.raises(ValidationError, match="RELAY_CLAIM_SECONDS"):
        OrchestratorSettings()
    monkeypatch.setenv("ORCHESTRATOR_RELAY_CLAIM_SECONDS", "30")
    assert OrchestratorSettings().relay_claim_seconds == 30


def test_one_variable_turns_prepared_statements_off_in_every_process(monkeypatch):
    """Behind PgBouncer in transaction mode every process must stop preparing statements: one
    unprefixed variable does it; the orchestrator's older name still works."""
    monkeypatch.setenv("DB_PREPARED_STATEMENTS", "false")
    assert OrderSettings().db_prepared_statements is False
    assert OrchestratorSettings().db_prepared_statements is False
    monkeypatch.delenv("DB_PREPARED_STATEMENTS")
    assert OrderSettings().db_prepared_statements is True
    monkeypatch.setenv("ORCHESTRATOR_DB_PREPARED_STATEMENTS", "false")
    assert OrchestratorSettings().db_prepared_statements is False
