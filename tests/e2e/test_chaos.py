"""A small run of the chaos harness (`make chaos` runs the full one): faults, dropped connections,
the orchestrator and a domain service killed and restarted, the database crashed and restarted
under them; then every invariant must hold and no process may have exited on its own."""

import os

from tools.chaos import ChaosConfig, ChaosRun, summary


def test_a_small_chaos_run_keeps_every_invariant(databases, tmp_path):
    config = ChaosConfig(
        sagas=60,
        concurrency=12,
        chaos_seconds=10,
        orchestrator_kills=2,
        service_kills=1,
        pg_restarts=1,
        seed=20261124,
        db_prefix=f"{os.environ.get('TEST_DB_PREFIX', 'saga_test')}_chaos",
        settle_seconds=120,
    )

    result = ChaosRun(config, tmp_path, say=lambda _: None).run()

    assert result.ok, summary(result)
    # Every payment start made a saga (40: four users of ten orders); reservation starts for a
    # seat another user held or had were refused at once (409), with no saga; refunds and
    # cancellations followed some of them.
    assert result.report.sagas > 40
    assert result.by_type["payment"] == 40
    assert result.by_type["refund"] > 0
    assert result.reservations > 0
    assert result.events["SIGKILL orchestrator"] == 2
    assert result.events["crash-restart postgres"] == 1
    assert result.exited == []
    assert sum(result.report.by_status.values()) == result.report.sagas
