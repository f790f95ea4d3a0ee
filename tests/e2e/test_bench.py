"""`make bench` end to end at tiny sizes: every section runs against real processes and the
report says what it measured. (Its numbers are not checked: they are measured, not tested.)"""

import re
from pathlib import Path

from tests.conftest import PREFIX
from tools import bench

SMALL_POOLS = {
    f"{prefix}_{name}": "2"
    for prefix in ("ORDERS", "USERS", "PAYMENTS", "CONCERTS", "ORCHESTRATOR", "DATA_PLATFORM")
    for name in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW")
}


def test_the_bench_runs_every_section_and_writes_its_report(tmp_path, monkeypatch):
    for name, value in SMALL_POOLS.items():  # beside the suite's own stack, on one server
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BENCH_DB_PREFIX", f"{PREFIX}_bench")  # not a real bench's databases
    readme = Path("README.md").read_text()
    report, picture = tmp_path / "benchmarks.md", tmp_path / "bench.png"
    argv = ["--levels", "1,4", "--per-level", "6", "--peers", "", "--platform-sagas", "3"]
    argv += ["--rounds", "1", "--recovery", "8", "--scale", "300", "--tracing", "4"]
    argv += ["--replicas", "1,2", "--replica-sagas", "4"]  # two sets are enough to compare
    assert bench.main([*argv, "--output", str(report), "--plot", str(picture)]) == 0

    text = report.read_text()
    for heading in (
        "## Targets",
        "## 1. The saga against the floor",
        "### Where the orchestrator's time goes",
        "## 3. The data platform does not slow payments",
        "## 4. Recovery after a SIGKILL",
        "## 5. Scale of the stored state",
        "## 6. What tracing costs",
        "## 7. Replicas of the orchestrator",
    ):
        assert heading in text
    assert "| concurrency | run | sagas/s | range | vs floor |" in text
    assert "| 4 | saga |" in text and "| 4 | floor |" in text
    assert "ABBA" in text  # the method says how runs are compared
    assert "| sagas unfinished at the kill | 8 |" in text
    assert "**all hold**" in text  # the recovered sagas' invariants
    assert "### 1. start: insert the saga" in text  # the query plans
    assert "| this checkout, every trace exported (loopback collector) |" in text
    exports = re.search(r"\(([\d,]+) export requests\)", text)
    assert exports and int(exports.group(1).replace(",", "")) > 0  # the traced one exported
    assert "| tracing with no endpoint: orchestrator CPU per saga ≤ 1.03x" in text
    assert "| replicas | sagas/s | range | vs 1 replica |" in text
    replica_rows = re.findall(r"^\| [12] \| [\d.]+ \| [\d.]+–.*$", text, re.MULTILINE)
    assert [row.split("|")[7].strip() for row in replica_rows] == ["0", "0"]  # none failed
    assert "| orchestrator replicas: throughput with 2 vs 1 |" in text
    assert Path("README.md").read_text() == readme  # only the report of record rewrites it


def test_the_readme_headline_is_rewritten_between_its_marks_only(tmp_path):
    start, end = bench.README_MARKS
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{start}\n- old\n{end}\nrest\n")
    bench._readme_headline(readme, ["new one", "new two"])
    assert readme.read_text() == f"intro\n{start}\n- new one\n- new two\n{end}\nrest\n"
