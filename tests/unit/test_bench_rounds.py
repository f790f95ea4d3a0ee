"""`make bench` compares runs in interleaved rounds: ABBA order, each run right after its own
warm-up, and the median of the rounds (with their range) is what it reports."""

import asyncio

import pytest

from tools import bench


@pytest.fixture
def no_services(monkeypatch):
    """Orders are numbers, and no process is read: only the order of the runs is under test."""
    seeded = iter(range(10**6))

    async def seed(http, stack, count):
        return [next(seeded) for _ in range(count)]

    monkeypatch.setattr(bench, "_seed", seed)
    monkeypatch.setattr(bench, "_cpu_seconds", lambda pids: {})


def _recorder(name: str, calls: list[tuple[str, int]]):
    async def pay(order_id: int) -> None:
        calls.append((name, order_id))

    return pay


def test_rounds_run_in_abba_order_each_after_its_own_warm_up(no_services):
    calls: list[tuple[str, int]] = []
    runs = {"A": _recorder("A", calls), "B": _recorder("B", calls)}

    measured = asyncio.run(bench.interleaved(None, None, runs, 2, 3, 3, {}))

    # Per run: a warm-up of warm_up_size(2) = 8 payments, then the 3 measured ones.
    per_run = bench.warm_up_size(2) + 3
    blocks = [calls[i : i + per_run] for i in range(0, len(calls), per_run)]
    assert [block[0][0] for block in blocks] == ["A", "B", "B", "A", "A", "B"]
    assert all(len({name for name, _ in block}) == 1 for block in blocks)
    assert [len(measured[name].runs) for name in "AB"] == [3, 3]
    assert all(len(sample.latencies) == 3 for sample in measured["A"].runs)  # not the warm-up's


def test_a_run_reports_the_median_of_its_rounds_and_their_range():
    def sample(throughput: float, p50: float) -> bench.Sample:
        return bench.Sample(latencies=[p50] * 10, seconds=10 / throughput, cpu={"x": throughput})

    rounds = bench.Rounds([sample(20.0, 0.3), sample(26.0, 0.1), sample(22.0, 0.2)])

    assert rounds.throughput == pytest.approx(22.0)
    assert (rounds.low, rounds.high) == (pytest.approx(20.0), pytest.approx(26.0))
    assert rounds.p50 == pytest.approx(0.2)
    assert rounds.cpu == {"x": pytest.approx(22.0)}
