"""deploy/observability, checked against promtool and against the code's metrics.

- The alert rules and the Prometheus configuration pass `promtool check`, and the rules pass
  their unit tests (`promtool test rules`). promtool missing is a failure, not a skip: `make
  promtool` installs it, and `make test` runs that first.
- Every alert has a test case that fires and one that stays silent, so an alert cannot be added
  untested, and carries what an operator needs (`for`, a severity, a summary, a description).
- Every metric the dashboard's queries and the alerts' expressions name is one the code exports:
  a renamed metric cannot leave a panel empty or an alert silent without this failing.
- The dashboard's queries parse as PromQL, and all go through its datasource variable.
"""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus.yml"
ALERTS = OBSERVABILITY / "alerts.yml"
ALERT_TESTS = OBSERVABILITY / "alerts.test.yml"
DASHBOARDS = sorted((OBSERVABILITY / "grafana" / "dashboards").glob("*.json"))
DATASOURCE = "${DS_PROMETHEUS}"
SEVERITIES = {"critical", "warning"}

# Series Prometheus itself adds to every scrape, beside what the code exports.
SCRAPE_SERIES = {"up"}
# The sample names each metric family type exports (prometheus_client strips a counter's
# `_total` from its family name). No `_created`: common.metrics disables those.
SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_sum", "_count"],
    "summary": ["", "_sum", "_count"],
    "info": ["_info"],
}

# PromQL: strings, label matchers, ranges (and Grafana's `[$__rate_interval]`), then the label
# lists of grouping and matching clauses, are removed before looking for metric names.
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
MATCHERS = re.compile(r"\{[^}]*\}")
RANGE = re.compile(r"\[[^\]]*\]")
LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
# An identifier not inside a number or a duration (`1e3`, `offset 5m`) nor a variable (`$job`).
IDENTIFIER = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
CALL = re.compile(r"\s*\(")
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not a function or an
    aggregation (followed by `(`), a keyword, a label, a string, a number or a duration."""
    text = STRING.sub(" ", expr)
    text = MATCHERS.sub(" ", text)
    text = RANGE.sub(" ", text)
    text = LABEL_LIST.sub(" ", text)
    return {
        match.group()
        for match in IDENTIFIER.finditer(text)
        if match.group().lower() not in KEYWORDS and not CALL.match(text, match.end())
    }


def unknown_metrics(exprs: dict[str, str], exported: set[str]) -> dict[str, list[str]]:
    """Each expression (by where it is) that names a metric not in `exported`, with those."""
    unknown = {where: sorted(metric_names(expr) - exported) for where, expr in exprs.items()}
    return {where: names for where, names in unknown.items() if names}


@cache
def exported_metrics() -> frozenset[str]:
    """Every sample name a process of this repository exports at /metrics. The orchestrator's
    app is built as it is served (its engine metrics, its HTTP instrumentation, which every
    service shares through common.metrics); nothing starts, nothing connects."""
    import common.metrics  # noqa: F401  (the HTTP histogram registers at import)
    from orchestrator.app import create_app, engine_metrics

    engine_metrics()
    create_app()
    names = set(SCRAPE_SERIES)
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, [""]))
    return frozenset(names)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def _dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside it


def _dashboard_exprs() -> dict[str, str]:
    return {
        f"{path.name}: {panel['title']} ({target['refId']})": target["expr"]
        for path in DASHBOARDS
        for panel in _panels(_dashboard(path))
        for target in panel.get("targets", [])
    }


def _alert_exprs() -> dict[str, str]:
    return {f"alerts.yml: {rule['alert']}": rule["expr"] for rule in _alert_rules()}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `make promtool` installs it (Debian's prometheus)")
    return path


def _run(promtool: str, *args: str | Path) -> None:
    done = subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{done.stdout}{done.stderr}"


# --- promtool -------------------------------------------------------------------------------


def test_the_alert_rules_are_valid(promtool):
    _run(promtool, "check", "rules", ALERTS)


def test_the_alert_rules_pass_their_unit_tests(promtool):
    _run(promtool, "test", "rules", ALERT_TESTS)


def test_the_prometheus_configuration_is_valid_with_its_rules(promtool):
    _run(promtool, "check", "config", PROMETHEUS_CONFIG)


def test_the_dashboard_queries_parse_as_promql(promtool, tmp_path):
    """promtool parses each query as a recording rule's expression; Grafana's own range
    variables become a plain duration first."""
    exprs = list(_dashboard_exprs().values())
    rules = [
        {"record": f"dashboard_query_{i}", "expr": re.sub(r"\$__\w+", "1m", expr)}
        for i, expr in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert exprs
    _run(promtool, "check", "rules", path)


# --- the alerts and their tests -------------------------------------------------------------


def test_the_rule_tests_load_these_rules():
    assert _yaml(ALERT_TESTS)["rule_files"] == [ALERTS.name]


def test_every_alert_says_how_urgent_and_what_to_do():
    rules = _alert_rules()
    assert rules
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]


def test_every_alert_has_a_case_that_fires_and_one_that_stays_silent():
    cases = [
        case for test in _yaml(ALERT_TESTS)["tests"] for case in test.get("alert_rule_test", [])
    ]
    alerts = {rule["alert"] for rule in _alert_rules()}
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts - firing == set(), "alerts without a case that fires"
    assert alerts - silent == set(), "alerts without a case that stays silent"
    assert (firing | silent) - alerts == set(), "cases of alerts that do not exist"


# --- metric names ---------------------------------------------------------------------------


def test_metric_names_skips_functions_keywords_labels_strings_and_durations():
    expr = (
        "histogram_quantile(0.95, sum by (le, job) (rate(http_request_duration_seconds_bucket{"
        'route!="/metrics", job=~"a|b"}[$__rate_interval] offset 1h))) > bool 1e3 '
        "and on (job) group_left (route) up == 1 or sum without (instance) "
        '(label_replace(outbox_backlog, "x", "$1", "job", "(.*)")) unless vector(0)'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up", "outbox_backlog"}


def test_a_misspelled_metric_is_caught():
    exported = exported_metrics()
    exprs = {
        "right": "sum(rate(saga_step_retries_total[5m]))",
        "misspelled": "sum(rate(saga_step_retry_total[5m]))",
        "a histogram without its suffix": "rate(saga_step_call_seconds[5m])",
        "a counter without its _total": "rate(sagas_started[5m])",
    }
    assert unknown_metrics(exprs, exported) == {
        "misspelled": ["saga_step_retry_total"],
        "a histogram without its suffix": ["saga_step_call_seconds"],
        "a counter without its _total": ["sagas_started"],
    }


def test_the_dashboard_and_the_alerts_name_only_metrics_the_code_exports():
    exprs = {**_dashboard_exprs(), **_alert_exprs()}
    unknown = unknown_metrics(exprs, exported_metrics())
    assert not unknown, "metrics the code does not export:\n" + "\n".join(
        f"  {where}: {', '.join(names)}" for where, names in unknown.items()
    )


# --- the dashboard --------------------------------------------------------------------------


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_the_dashboard_queries_go_through_its_datasource_variable(path):
    dashboard = _dashboard(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    panels = [panel for panel in _panels(dashboard) if panel["type"] != "row"]
    assert len({panel["id"] for panel in _panels(dashboard)}) == len(list(_panels(dashboard)))
    for panel in panels:
        assert panel["targets"], panel["title"]
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": DATASOURCE}, panel["title"]
