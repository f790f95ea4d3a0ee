"""`make bench`'s replicas section: sets of 1, 2 and 3 orchestrators on one database each, taking
turns in interleaved rounds, the starts spread over a set in turn, every process stopped; and
what the report says of it. No process runs here: the orchestrators are fakes."""

import argparse
import asyncio

import pytest

from tools import bench, bench_report


def _sample(throughput: float, cpu: dict[str, float], sagas: int = 10) -> bench.Sample:
    return bench.Sample(latencies=[0.5] * sagas, seconds=sagas / throughput, cpu=cpu)


@pytest.fixture
def measured() -> dict[int, bench.Rounds]:
    """Made-up rounds: the orchestrators' work divided among the replicas, a little lost."""
    return {
        1: bench.Rounds([_sample(40.0, {"replica-1": 0.010, "order": 0.008, "postgres": 0.004})]),
        2: bench.Rounds(
            [_sample(38.0, {"replica-1": 0.0055, "replica-2": 0.0055, "postgres": 0.004})]
        ),
        3: bench.Rounds(
            [_sample(36.0, {"replica-1": 0.004, "replica-2": 0.004, "replica-3": 0.004})]
        ),
    }


def test_the_table_gives_throughput_against_one_replica_and_cpu_summed_over_the_set(measured):
    rows = bench.replicas_table(measured).splitlines()

    assert rows[0].startswith("| replicas | sagas/s | range | vs 1 replica |")
    assert rows[2].startswith("| 1 | 40.0 | 40.0–40.0 | 1.00x | 500 | 500 | 0 | 10.0 | 10.0 |")
    assert rows[3].startswith("| 2 | 38.0 | 38.0–38.0 | 0.95x | 500 | 500 | 0 | 11.0 | 5.5 |")
    assert rows[4].startswith("| 3 | 36.0 | 36.0–36.0 | 0.90x | 500 | 500 | 0 | 12.0 | 4.0 |")
    assert rows[2].endswith("| order 8, postgres 4 |")  # the services and PostgreSQL, apart


def test_the_targets_report_the_ratios_with_no_verdict(measured):
    saga = bench.Rounds([_sample(40.0, {"orchestrator": 0.010})])
    results = {(32, "saga"): saga, (32, "floor"): saga}

    table, headline = bench.targets(results, {}, None, None, None, None, measured)

    row = "| orchestrator replicas: throughput with 2 and 3 vs 1 | 2: 0.95x, 3: 0.90x "
    assert row + "| reported (no target) |" in table.splitlines()
    assert headline[-1].endswith("as a ratio to 1 replica: 2: 0.95x, 3: 0.90x")


def test_the_report_explains_the_section_or_says_it_was_not_run(measured):
    args = argparse.Namespace(
        rounds=3,
        per_level=120,
        peer_levels="8,32",
        platform_sagas=150,
        platform_concurrency=4,
        tracing=0,
        replicas="1,2,3",
        replica_sagas=150,
    )
    common = dict(
        machine="test",
        minutes=1.0,
        args=args,
        targets="",
        headline=[],
        concurrency="",
        profile="",
        peers="",
        peer_failures={},
        platform="",
        recovery=None,
        scale=None,
        scale_table="",
        plot=None,
    )
    table = bench.replicas_table(measured)

    text = bench_report.render(**common, replicas=table)
    section = text.split("## 7. Replicas of the orchestrator", 1)[1]
    assert table in section
    assert "A second replica adds no core" in section
    assert "_Not run (`--replicas 0`)._" in bench_report.render(**common)


def test_starts_go_to_the_replicas_of_a_set_in_turn(monkeypatch):
    taken: list[str] = []

    def payer(http, url):
        async def pay(order_id: int) -> None:
            taken.append(url)

        return pay

    monkeypatch.setattr(bench, "_payer", payer)
    pay = bench._round_robin(None, ["a", "b", "c"])

    async def pay_all() -> None:
        await asyncio.gather(*(pay(n) for n in range(7)))

    asyncio.run(pay_all())
    assert taken == ["a", "b", "c", "a", "b", "c", "a"]


def test_each_replica_gets_the_warm_up_one_orchestrator_alone_gets(monkeypatch):
    taken: list[str] = []
    seeded = iter(range(10**6))

    async def seed(http, stack, count):
        return [next(seeded) for _ in range(count)]

    def payer(http, url):
        async def pay(order_id: int) -> None:
            taken.append(url)

        return pay

    monkeypatch.setattr(bench, "_seed", seed)
    monkeypatch.setattr(bench, "_cpu_seconds", lambda pids: {})
    monkeypatch.setattr(bench, "_payer", payer)

    sample = asyncio.run(bench._replica_run(None, ["a", "b", "c"], 6, 4, "3 replicas", {}))

    warm_up = bench.warm_up_size(4)
    assert [taken[: 3 * warm_up].count(url) for url in "abc"] == [warm_up] * 3
    assert len(taken) == 3 * warm_up + 6
    assert len(sample.latencies) == 6  # the measured payments only


class FakeReplica:
    """An orchestrator process as the section uses it; the log records what happens to it."""

    def __init__(self, name: str, env: dict[str, str], log: list, unhealthy: str | None):
        self.name, self.env, self.log, self.unhealthy = name, env, log, unhealthy
        self.url = f"http://{name}"
        self.popen = None

    def start(self) -> None:
        self.popen = type("Popen", (), {"pid": len(self.log)})()
        self.log.append(("start", self.name))

    def wait_healthy(self, timeout: float) -> None:
        if self.name == self.unhealthy:
            raise RuntimeError(f"{self.name} did not become healthy")

    def stop(self) -> None:
        self.log.append(("stop", self.name))


@pytest.fixture
def fake_replicas(monkeypatch):
    """-> (log of starts and stops, runs as (replicas' instance ids, database), the name of a
    replica that will not become healthy: set it to fail one)."""
    log: list[tuple[str, str]] = []
    runs: list[tuple[list[str], str]] = []
    setting = {"unhealthy": None}
    made: dict[str, FakeReplica] = {}

    def orchestrator_process(stack, log_dir, name, env, defaults=False):
        assert defaults, "the replicas run with the production settings"
        made[name] = FakeReplica(name, env, log, setting["unhealthy"])
        return made[name]

    async def replica_run(stack, urls, sagas, concurrency, label, pids):
        replicas = [made[url.removeprefix("http://")] for url in urls]
        ids = [r.env["ORCHESTRATOR_INSTANCE_ID"] for r in replicas]
        (database,) = {r.env["ORCHESTRATOR_DATABASE_URL"] for r in replicas}
        runs.append((ids, database))
        return _sample(10.0, {name: 0.01 for name in pids})

    monkeypatch.setattr(bench, "orchestrator_process", orchestrator_process)
    monkeypatch.setattr(bench, "_replica_run", replica_run)
    monkeypatch.setattr(bench, "drop_database", lambda url: None)
    monkeypatch.setattr(bench, "migrate", lambda url, history: None)
    return log, runs, setting


ENV = {"ORCHESTRATOR_DATABASE_URL": "postgresql://u@h/saga_x_orchestrator"}


def _alive_at_most(log: list[tuple[str, str]]) -> int:
    alive, most = set(), 0
    for event, name in log:
        if event == "start":
            alive.add(name)
        else:
            alive.discard(name)
        most = max(most, len(alive))
    return most


def test_the_sets_take_turns_each_on_its_own_database_and_every_replica_is_stopped(
    fake_replicas, tmp_path
):
    log, runs, _ = fake_replicas

    measured = bench.replicas_section(bench.Stack(), [1, 2, 3], 5, 32, 3, ENV, tmp_path)

    assert [len(ids) for ids, _ in runs] == [1, 2, 3, 3, 2, 1, 1, 2, 3]
    for ids, database in runs:
        assert len(set(ids)) == len(ids)  # distinct leases
        assert database.endswith(f"saga_x_orchestrator_replicas_{len(ids)}")
    assert [len(measured[n].runs) for n in (1, 2, 3)] == [3, 3, 3]
    assert sorted(measured[3].runs[0].cpu) == ["replica-1", "replica-2", "replica-3"]
    started = [name for event, name in log if event == "start"]
    assert sorted(started) == sorted(name for event, name in log if event == "stop")
    assert _alive_at_most(log) == 3


def test_a_replica_that_does_not_start_stops_its_whole_set(fake_replicas, tmp_path):
    log, runs, setting = fake_replicas
    setting["unhealthy"] = "orchestrator-replicas-2-2"

    with pytest.raises(RuntimeError, match="did not become healthy"):
        bench.replicas_section(bench.Stack(), [1, 2], 5, 32, 1, ENV, tmp_path)

    assert [len(ids) for ids, _ in runs] == [1]
    assert log[-4:] == [
        ("start", "orchestrator-replicas-2-1"),
        ("start", "orchestrator-replicas-2-2"),
        ("stop", "orchestrator-replicas-2-1"),
        ("stop", "orchestrator-replicas-2-2"),
    ]


def test_more_replicas_than_may_run_at_once_are_refused(fake_replicas, tmp_path):
    with pytest.raises(ValueError, match="at most 3"):
        bench.replicas_section(bench.Stack(), [1, 4], 5, 32, 1, ENV, tmp_path)
