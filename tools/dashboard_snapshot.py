"""A picture of the Grafana dashboard, made from real data, for the README.

Grafana cannot run everywhere this repository is worked on, so this draws the dashboard itself:
it starts every process on databases of its own (fault injection on), runs Debian's
`prometheus` scraping them every 2 s under the job names of deploy/observability/prometheus.yml
(with its alerts.yml), drives a bounded, realistic mix for a few minutes, then runs each panel's
own queries from deploy/observability/grafana/dashboards/saga-orchestrator.json through
Prometheus' HTTP API over the run and draws them with matplotlib in the dashboard's layout.

The mix, on loopback only: users and orders created and paid by a few clients at a time; about
one payment in ten refused for want of balance (compensated); a few refunds; transient faults
(503s, answers slower than the orchestrator's 1 s step timeout) so that steps are retried, and
refused steps so that sagas compensate; one payment left in NEEDS_ATTENTION (its approval
refused, then its charge-back failing past the compensation budget); and the data platform down
for a while, so that the outbox's backlog, failures and delivery lag move.

    python -m tools.dashboard_snapshot [--minutes 4] [--output docs/img/dashboard.png]
                                       [--concurrency 4] [--max-sagas 1500] [--seed N]
                                       [--keep DIR]            # keep Prometheus' data and logs
    python -m tools.dashboard_snapshot --render-from DIR      # draw a kept run again

Grafana's variables become: `$__interval` the query step, `$__rate_interval` `--rate-interval`
(30s: Grafana's own rule would give 8 s at a 2 s scrape, too jumpy for a few sagas a second),
`$__range` the run's length. It needs matplotlib (`pip install -e .[bench]`).
"""

import argparse
import contextlib
import json
import math
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from common.db import drop_database
from tools.stack import (
    FAULT_INJECTION_ENV,
    PEERS,
    ROOT,
    Stack,
    database_env,
    free_port,
    postgres_url,
    reset_databases,
    start_stack,
)

DASHBOARD = ROOT / "deploy" / "observability" / "grafana" / "dashboards" / "saga-orchestrator.json"
ALERTS = ROOT / "deploy" / "observability" / "alerts.yml"
OUTPUT = ROOT / "docs" / "img" / "dashboard.png"
DB_PREFIX = "saga_shot"
SCRAPE_SECONDS = 2
SERVICE_AUTH = {"Authorization": "Bearer dev-service-token"}
ADMIN_AUTH = {"Authorization": "Bearer dev-admin-token"}
# The job of each process, as deploy/observability/prometheus.yml names it (its package).
JOBS = {name: package for name, package in PEERS.items()} | {"orchestrator": "orchestrator"}

# Transient faults (retried by the orchestrator) and refusals (the saga compensates), by
# (service, fault point). The refund's points are the payment saga's compensations.
TRANSIENT = [  # (service, point, weight): a refund is rarer than a payment
    ("order", "start_payment", 3),
    ("user", "deduct", 3),
    ("payment", "approve_payment", 3),
    ("order", "complete_payment", 3),
    ("payment", "refund_payment", 1),
    ("order", "start_refund", 1),
]
REFUSAL_POINTS = [("payment", "approve_payment"), ("order", "complete_payment"), ("user", "deduct")]


def say(message: str) -> None:
    print(f"dashboard_snapshot: {message}", file=sys.stderr, flush=True)


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


# -- Prometheus --------------------------------------------------------------------------------


class Prometheus:
    """Debian's prometheus as a subprocess, on a free port, with its data in `data_dir`."""

    def __init__(self, data_dir: Path, log_path: Path, stack: Stack | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = log_path
        self.config_path = data_dir.parent / "prometheus-config.yml"
        self.stack = stack
        self.popen: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        """JSON is YAML: the scrape configuration of deploy/observability/prometheus.yml for
        this stack's ports. Without a stack (drawing a kept run), nothing is scraped."""
        interval = f"{SCRAPE_SECONDS}s"
        jobs = []
        if self.stack is not None:
            jobs = [
                {
                    "job_name": job,
                    "static_configs": [{"targets": [f"127.0.0.1:{self.stack.processes[n].port}"]}],
                }
                for n, job in JOBS.items()
            ]
        return {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": [str(ALERTS)] if self.stack is not None else [],
            "scrape_configs": jobs,
        }

    def start(self) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)  # a process that is starting: nothing to wait on but its answer
        raise RuntimeError(f"prometheus did not start:\n{self.log_path.read_text()[-3000:]}")

    def wait_for_targets(self, timeout: float = 30) -> None:
        """Until every process has been scraped once, and answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self.get("/api/v1/targets")["activeTargets"]
            if len(targets) == len(JOBS) and all(t["health"] == "up" for t in targets):
                return
            time.sleep(0.5)
        raise RuntimeError(f"prometheus could not scrape every process: {targets}")

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {body}")
        return body["data"]

    def version(self) -> str:
        return str(self.get("/api/v1/status/buildinfo")["version"]).split("+")[0]

    def firing(self) -> list[str]:
        """The alerts firing now, as `Name (label=value, ...)`."""
        names = []
        for alert in self.get("/api/v1/alerts")["alerts"]:
            if alert["state"] != "firing":
                continue
            labels = {
                k: v
                for k, v in alert["labels"].items()
                if k not in ("alertname", "severity", "instance", "job")
            }
            detail = ", ".join(f"{v}" for _, v in sorted(labels.items()))
            names.append(f"{alert['labels']['alertname']}" + (f" ({detail})" if detail else ""))
        return sorted(set(names))

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


# -- the mix -----------------------------------------------------------------------------------


@dataclass
class MixConfig:
    seconds: float = 240.0
    concurrency: int = 4
    max_sagas: int = 1500
    refund_share: float = 0.05  # of the completed payments
    short_share: float = 0.1  # of the payments: the user's balance does not cover the order
    seed: int | None = None


@dataclass
class Mix:
    """Clients paying orders at a modest pace, and a schedule of faults and an outage."""

    stack: Stack
    config: MixConfig
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    users: int = 0
    orders: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.refunds_open = threading.Event()
        self.refunds_open.set()
        self.refunds_in_flight = 0
        self.started = 0
        self.http = httpx.Client(timeout=30)

    def url(self, name: str, path: str) -> str:
        return f"{self.stack.url(name)}{path}"

    def note(self, what: str) -> None:
        self.timeline.append((time.time(), what))
        say(what)

    # -- clients --------------------------------------------------------------------------------

    def _ticket(self) -> bool:
        with self.lock:
            if self.started >= self.config.max_sagas:
                return False
            self.started += 1
            return True

    def _count(self, what: str) -> None:
        with self.lock:
            self.outcomes[what] += 1

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=90) as http:
            while not self.stop.is_set() and self._ticket():
                try:
                    self.pay_one(http, rng)
                except (httpx.HTTPError, KeyError, ValueError) as error:
                    with self.lock:
                        self.errors += 1
                    say(f"a client's call failed: {error!r}")
                self.stop.wait(rng.uniform(0.2, 1.4))  # a user's pace, not a benchmark's

    def pay_one(self, http: httpx.Client, rng: random.Random) -> None:
        amount = rng.randint(10, 200) * 100
        short = rng.random() < self.config.short_share
        balance = amount - rng.randint(1, 9) * 100 if short else amount + rng.randint(0, 50) * 100
        user = http.post(self.url("user", "/users"), json={"name": "shot", "balance": balance})
        user.raise_for_status()
        item = {"product_id": rng.randint(1, 20), "quantity": 1, "unit_price": amount}
        order = http.post(
            self.url("order", "/orders"), json={"user_id": user.json()["id"], "items": [item]}
        )
        order.raise_for_status()
        with self.lock:
            self.users += 1
            self.orders += 1
        order_id = order.json()["id"]
        paid = http.post(
            self.url("orchestrator", "/payments"),
            json={"order_id": order_id},
            headers={"Idempotency-Key": f"shot-pay-{order_id}"},
            params={"wait": 30},
        )
        status = paid.json().get("status", str(paid.status_code))
        self._count(f"payment {status}")
        if status != "COMPLETED" or rng.random() >= self.config.refund_share:
            return
        if not self.refunds_open.is_set() or not self._ticket():
            return
        with self.lock:
            self.refunds_in_flight += 1
        try:
            refunded = http.post(
                self.url("orchestrator", "/refunds"),
                json={"order_id": order_id},
                headers={"Idempotency-Key": f"shot-refund-{order_id}"},
                params={"wait": 30},
            )
            self._count(f"refund {refunded.json().get('status', refunded.status_code)}")
        finally:
            with self.lock:
                self.refunds_in_flight -= 1

    # -- faults and the outage -------------------------------------------------------------------

    def fault(
        self, service: str, point: str, mode: str, times: int | None = 1, counted: bool = True
    ) -> None:
        rule = {"point": point, "mode": mode, "times": times, "delay_ms": 0}
        if mode == "delay":
            rule["delay_ms"] = 1_500  # past the orchestrator's 1 s step timeout: retried
        r = self.http.post(self.url(service, "/_faults"), json=rule, headers=SERVICE_AUTH)
        r.raise_for_status()
        if counted:
            self.faults[mode] += 1

    def clear_faults(self, *services: str) -> None:
        for service in services or ("order", "user", "payment", "concert"):
            self.http.delete(self.url(service, "/_faults"), headers=SERVICE_AUTH)

    def platform(self, down: bool) -> None:
        body = {"down": down, "fail_rate": 0.0, "latency_ms": 0}
        self.http.post(self.url("data_platform", "/_control"), json=body).raise_for_status()

    def needing_attention(self) -> list[dict[str, Any]]:
        r = self.http.get(
            self.url("orchestrator", "/admin/sagas"),
            params={"status": "NEEDS_ATTENTION"},
            headers=ADMIN_AUTH,
        )
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def outbox_pending(self) -> int:
        r = self.http.get(
            self.url("orchestrator", "/admin/outbox"), params={"limit": 1}, headers=ADMIN_AUTH
        )
        return int(r.json()["pending"])

    def wait(self, until: float) -> bool:
        """Sleep until `until` (a time.monotonic()); False once the clients are done."""
        return not self.stop.wait(max(0.0, until - time.monotonic()))

    def flaky(self, until: float, every: float, refusals: bool) -> None:
        """One transient fault every `every` seconds or so, and every fourth a refusal."""
        n = 0
        while time.monotonic() < until and not self.stop.is_set():
            n += 1
            if refusals and n % 4 == 0:
                service, point = self.rng.choice(REFUSAL_POINTS)
                self.fault(service, point, "refuse")
            else:
                ((service, point, _),) = self.rng.choices(TRANSIENT, [w for *_, w in TRANSIENT])
                self.fault(service, point, self.rng.choice(("error", "error", "delay")))
            self.wait(min(until, time.monotonic() + self.rng.uniform(0.5, 1.5) * every))

    def stick_one(self, deadline: float) -> None:
        """One payment left in NEEDS_ATTENTION: its approval refused, and its compensation (the
        charge-back of its deduction) failing past the compensation budget. No refund runs
        meanwhile (its credit is the same charge-back) and no other fault is set, so that only
        that payment compensates through the failing charge-back."""
        self.refunds_open.clear()
        try:
            self.clear_faults()
            while self.refunds_in_flight and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2.0)  # compensations of earlier refusals finish
            before = len(self.needing_attention())
            self.fault("payment", "approve_payment", "refuse", counted=False)
            self.fault("user", "charge_back", "error", times=None, counted=False)
            while time.monotonic() < deadline and not self.stop.is_set():
                stuck = self.needing_attention()
                if len(stuck) > before:
                    self.note(f"payment saga {stuck[0]['saga_id'][:8]} needs attention")
                    break
                time.sleep(0.5)
            else:
                self.note("no saga reached NEEDS_ATTENTION in time")
        finally:
            self.clear_faults()
            self.refunds_open.set()

    def run(self) -> None:
        """The clients, and beside them (in this thread) the schedule, in shares of the run:
        calm, then faults, then the stuck payment, calm, the data platform down, light faults."""
        total = self.config.seconds
        begin = time.monotonic()
        self.note(f"{self.config.concurrency} clients start paying orders")
        clients = [
            threading.Thread(target=self.client, args=(self.rng.random(),), daemon=True)
            for _ in range(self.config.concurrency)
        ]
        for thread in clients:
            thread.start()
        done = threading.Thread(target=lambda: [t.join() for t in clients], daemon=True)
        done.start()

        def at(share: float) -> float:
            return begin + share * total

        def watch() -> None:  # the clients stop on their own once the count is reached
            done.join()
            self.stop.set()

        threading.Thread(target=watch, daemon=True).start()
        try:
            if self.wait(at(0.12)):
                self.note("transient faults and refused steps injected")
                self.flaky(at(0.42), every=2.0, refusals=True)
            if self.wait(at(0.45)):
                self.note("a payment's compensation made to fail past its budget")
                self.stick_one(deadline=at(0.45) + 45)
            outage = min(60.0, max(10.0, 0.2 * total))
            if self.wait(at(0.58)):
                self.note(f"data platform down for {outage:.0f} s")
                self.platform(down=True)
                self.wait(time.monotonic() + outage)
                self.platform(down=False)
                self.note("data platform up again")
            if self.wait(at(0.82)):
                self.note("a few transient faults")
                self.flaky(at(1.0), every=5.0, refusals=False)
            self.wait(at(1.0))
        finally:
            self.stop.set()
            done.join(timeout=120)
            self.platform(down=False)
            self.clear_faults()
            self.note(f"clients stopped after {time.monotonic() - begin:.0f} s")

    def settle(self, timeout: float = 60) -> None:
        """Until the outbox is delivered (the backlog back to zero), or `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.outbox_pending():
            time.sleep(1.0)

    def summary(self) -> list[str]:
        def part(kind: str) -> str:
            counts = {k.split(" ", 1)[1]: v for k, v in self.outcomes.items() if k.startswith(kind)}
            total = sum(counts.values())
            detail = ", ".join(f"{v} {k.lower().replace('_', ' ')}" for k, v in counts.items())
            return f"{total} {kind}s ({detail})" if total else f"no {kind}s"

        return [
            f"{self.users} users and orders, {part('payment')}, {part('refund')}",
            f"faults injected, besides the stuck payment's: {self.faults['error']} 503s, "
            f"{self.faults['delay']} answers past the 1 s step timeout, "
            f"{self.faults['refuse']} refused steps (each on the next call of a step)",
        ]


# -- drawing -----------------------------------------------------------------------------------

BG = "#111217"
PANEL = "#181b1f"
BORDER = "#2a2d33"
TEXT = "#ccccdc"
MUTED = "#8e8e9e"
GRID = "#26292f"
# Grafana's classic palette, in its order.
PALETTE = [
    "#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0",
    "#37872D", "#FADE2A", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477",
    "#B7DBAB", "#F4D598", "#70DBED", "#F9BA8F", "#F29191", "#82B5D8", "#E5A8E2", "#AEA2E0",
]  # fmt: skip
NAMED = {
    "green": "#73BF69",
    "red": "#F2495C",
    "yellow": "#FADE2A",
    "orange": "#FF9830",
    "blue": "#5794F2",
    "purple": "#B877D9",
    "transparent": "#00000000",
}
CELL_H, CELL_GAP = 26, 6  # a grid unit's height and the margin between panels, in pixels
MARGIN = 10
TIME_STEPS = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)  # seconds
HEADER_SIZE, HEADER_LINE = 8.3, 14  # the header's font size (points) and line height (pixels)


@dataclass
class Window:
    start: float
    end: float
    step: int  # seconds
    rate_interval: str

    @property
    def seconds(self) -> int:
        return round(self.end - self.start)


@dataclass
class Series:
    label: str
    times: list[float]
    values: list[float]


def substitute(expr: str, window: Window) -> str:
    """Grafana's built-in variables, as Grafana would expand them for this range."""
    values = {
        "__rate_interval": window.rate_interval,
        "__interval_ms": str(window.step * 1000),
        "__interval": f"{window.step}s",
        "__range_ms": str(window.seconds * 1000),
        "__range_s": str(window.seconds),
        "__range": f"{window.seconds}s",
    }
    return re.sub(r"\$\{?(__\w+?)\}?(?!\w)", lambda m: values.get(m.group(1), m.group(0)), expr)


def legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt or fmt == "__auto":
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
        return f"{labels.get('__name__', '')}{{{inner}}}" if inner else labels.get("__name__", "")
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


def query(prometheus: Prometheus, target: dict[str, Any], window: Window) -> list[Series]:
    expr = substitute(target["expr"], window)
    fmt = target.get("legendFormat", "")
    if target.get("instant"):
        data = prometheus.get("/api/v1/query", query=expr, time=window.end)
        return [
            Series(legend(fmt, r["metric"]), [float(r["value"][0])], [float(r["value"][1])])
            for r in data["result"]
        ]
    data = prometheus.get(
        "/api/v1/query_range", query=expr, start=window.start, end=window.end, step=window.step
    )
    series = [
        Series(
            legend(fmt, r["metric"]),
            [float(t) for t, _ in r["values"]],
            [float(v) for _, v in r["values"]],
        )
        for r in data["result"]
    ]
    return sorted(series, key=lambda s: s.label)


def format_value(value: float, unit: str) -> str:
    """A value as Grafana shows it in this unit (short, s, reqps, percentunit)."""
    if value is None or math.isnan(value):
        return "No data"

    def num(v: float) -> str:
        digits = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2
        text = f"{v:.{digits}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text

    if unit == "s":
        for limit, scale, name in (
            (1e-3, 1e6, "µs"),
            (1, 1e3, "ms"),
            (60, 1, "s"),
            (3600, 1 / 60, "min"),
        ):
            if abs(value) < limit:
                return "0" if value == 0 else f"{num(value * scale)} {name}"
        return f"{num(value / 3600)} hour"
    if unit == "percentunit":
        return f"{num(value * 100)}%"
    if unit == "reqps":
        return f"{num(value)} req/s"
    for limit, name in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= limit:
            return f"{num(value / limit)} {name}"
    return num(value)


def threshold_color(value: float, fieldconfig: dict[str, Any], default: str) -> str:
    steps = fieldconfig.get("thresholds", {}).get("steps", [])
    color = default
    for step in steps:
        if step.get("value") is None or value >= step["value"]:
            color = step["color"]
    return NAMED.get(color, color)


class Canvas:
    """A figure addressed in pixels from its top-left corner, as Grafana lays panels out."""

    def __init__(self, width: int, height: int):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt = plt
        self.width, self.height, self.dpi = width, height, 100
        self.fig = plt.figure(figsize=(width / self.dpi, height / self.dpi), dpi=self.dpi)
        self.fig.patch.set_facecolor(BG)
        self.renderer = self.fig.canvas.get_renderer()  # type: ignore[attr-defined]

    def resize(self, height: int) -> None:
        self.height = height
        self.fig.set_size_inches(self.width / self.dpi, height / self.dpi)
        self.renderer = self.fig.canvas.get_renderer()  # type: ignore[attr-defined]

    def wrap(self, paragraphs: list[str], width: float, size: float) -> list[tuple[str, bool]]:
        """Each paragraph in lines that fit `width` pixels, with whether a line starts one."""
        lines: list[tuple[str, bool]] = []
        for paragraph in paragraphs:
            line, first = "", True
            for word in paragraph.split(" "):
                candidate = f"{line} {word}" if line else word
                if line and self.text_width(candidate, size) > width:
                    lines.append((line, first))
                    line, first = "    " + word, False
                else:
                    line = candidate
            lines.append((line, first))
        return lines

    def box(self, x: float, y: float, w: float, h: float) -> list[float]:
        """[left, bottom, width, height] in figure fractions."""
        return [x / self.width, 1 - (y + h) / self.height, w / self.width, h / self.height]

    def rect(
        self, x: float, y: float, w: float, h: float, color: str, edge: str = BORDER, z: float = -1
    ) -> None:
        """A rectangle: under the axes (z < 0: a panel's background), or over them."""
        from matplotlib.patches import Rectangle

        left, bottom, width, height = self.box(x, y, w, h)
        self.fig.patches.append(
            Rectangle(
                (left, bottom),
                width,
                height,
                transform=self.fig.transFigure,
                facecolor=color,
                edgecolor=edge,
                linewidth=1,
                zorder=z,
            )
        )

    def text(self, x: float, y: float, s: str, size: float, **kw: Any) -> Any:
        """Text with its left (or `ha`) and vertical centre at (x, y) pixels."""
        kw.setdefault("color", TEXT)
        kw.setdefault("va", "center")
        return self.fig.text(
            x / self.width, 1 - y / self.height, s, fontsize=size, parse_math=False, **kw
        )

    def text_width(self, s: str, size: float) -> float:
        from matplotlib.font_manager import FontProperties

        w, _, _ = self.renderer.get_text_width_height_descent(
            s, FontProperties(size=size), ismath=False
        )
        return float(w)

    def save(self, path: Path) -> None:
        """A PNG of 256 colours (Pillow comes with matplotlib): a third of the full-colour
        size, and the lines and text look the same."""
        import io

        from PIL import Image

        buffer = io.BytesIO()
        self.fig.savefig(buffer, format="png", dpi=self.dpi, facecolor=BG)
        self.plt.close(self.fig)
        image = Image.open(buffer).convert("RGB")
        path.parent.mkdir(parents=True, exist_ok=True)
        image.quantize(256, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True
        )


class Renderer:
    def __init__(self, prometheus: Prometheus, dashboard: dict[str, Any], window: Window):
        self.prometheus = prometheus
        self.dashboard = dashboard
        self.window = window

    def render(self, path: Path, width: int, header: list[str]) -> None:
        panels = self.dashboard["panels"]
        rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
        canvas = Canvas(width, 100)
        lines = canvas.wrap(header, width - 2 * MARGIN, HEADER_SIZE)
        header_h = 40 + len(lines) * HEADER_LINE + 8
        canvas.resize(header_h + rows * (CELL_H + CELL_GAP) + MARGIN)
        self.header(canvas, lines)
        col = (width - 2 * MARGIN + CELL_GAP) / 24
        for panel in panels:
            grid = panel["gridPos"]
            x = MARGIN + grid["x"] * col
            y = header_h + grid["y"] * (CELL_H + CELL_GAP)
            w = grid["w"] * col - CELL_GAP
            h = grid["h"] * (CELL_H + CELL_GAP) - CELL_GAP
            draw = {
                "row": self.row,
                "stat": self.stat,
                "gauge": self.stat,
                "timeseries": self.timeseries,
                "state-timeline": self.state_timeline,
            }.get(panel["type"], self.unsupported)
            draw(canvas, panel, x, y, w, h)
        canvas.save(path)

    def header(self, canvas: Canvas, lines: list[tuple[str, bool]]) -> None:
        start = datetime.fromtimestamp(self.window.start, UTC)
        end = datetime.fromtimestamp(self.window.end, UTC)
        minutes, seconds = divmod(self.window.seconds, 60)
        canvas.text(MARGIN, 20, self.dashboard["title"], 15, weight="bold")
        canvas.text(
            canvas.width - MARGIN,
            20,
            f"{start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC ({minutes} min {seconds} s)",
            10.5,
            ha="right",
        )
        for i, (line, first) in enumerate(lines):
            canvas.text(
                MARGIN, 44 + i * HEADER_LINE, line, HEADER_SIZE, color=TEXT if first else MUTED
            )

    def panel_frame(self, canvas: Canvas, panel: dict[str, Any], x, y, w, h, bg=PANEL) -> None:
        canvas.rect(x, y, w, h, bg)
        canvas.text(x + 8, y + 14, panel["title"], 9.5, weight="bold", color=TEXT)

    def row(self, canvas: Canvas, panel: dict[str, Any], x, y, w, h) -> None:
        canvas.text(x + 2, y + h / 2, f"⌄  {panel['title']}", 11, weight="bold")

    def unsupported(self, canvas: Canvas, panel: dict[str, Any], x, y, w, h) -> None:
        self.panel_frame(canvas, panel, x, y, w, h)
        canvas.text(x + w / 2, y + h / 2, f"({panel['type']} panel)", 9, ha="center", color=MUTED)

    def series(self, panel: dict[str, Any]) -> list[Series]:
        return [
            s for target in panel["targets"] for s in query(self.prometheus, target, self.window)
        ]

    def stat(self, canvas: Canvas, panel: dict[str, Any], x, y, w, h) -> None:
        config = panel.get("fieldConfig", {}).get("defaults", {})
        found = [s for s in self.series(panel) if s.values and not math.isnan(s.values[-1])]
        value = found[0].values[-1] if found else float("nan")
        color = threshold_color(value, config, NAMED["green"]) if found else PANEL
        background = panel.get("options", {}).get("colorMode") == "background"
        self.panel_frame(canvas, panel, x, y, w, h, bg=color if background else PANEL)
        size = min(h * 0.42, w * 0.5) * 72 / canvas.dpi
        canvas.text(
            x + w / 2,
            y + 14 + (h - 14) / 2,
            format_value(value, config.get("unit", "short")),
            size,
            ha="center",
            weight="bold",
            color="#ffffff" if background else color,
        )

    def timeseries(self, canvas: Canvas, panel: dict[str, Any], x, y, w, h) -> None:
        import numpy as np
        from matplotlib import dates, ticker

        self.panel_frame(canvas, panel, x, y, w, h)
        config = panel.get("fieldConfig", {}).get("defaults", {})
        unit = config.get("unit", "short")
        series = self.series(panel)
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
        body_top, body_bottom = y + 28, y + h - 6
        legend_h = self.legend(
            canvas, [s.label for s in series], colors, x + 8, w - 16, body_bottom, body_top
        )
        plot_top, plot_bottom = body_top, body_bottom - legend_h - 16
        left = x + 56
        ax = canvas.fig.add_axes(
            canvas.box(left, plot_top, x + w - 12 - left, plot_bottom - plot_top)
        )
        self.style_axes(ax, unit)
        grid = self.grid()
        top, whole = 0.0, unit == "short"
        for s, color in zip(series, colors, strict=True):
            values = self.on_grid(s, grid)
            ax.plot(dates.date2num(self.datetimes(grid)), values, color=color, linewidth=1.1)
            if np.isfinite(values).any():
                top = max(top, float(np.nanmax(values)))
                whole = whole and bool(np.all(np.mod(values[np.isfinite(values)], 1) == 0))
        bottom = config.get("min", 0)
        # Round ticks (whole ones for counts), the axis up to the first tick above the data.
        locator: Any = ticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10], integer=whole)
        if unit == "s" and top >= 60:  # durations past a minute: ticks at whole minutes or so
            step = next((d for d in TIME_STEPS if top / d <= 4), TIME_STEPS[-1])
            locator = ticker.MultipleLocator(step)
        ticks = locator.tick_values(bottom, top if top > bottom else bottom + 1)
        ax.set_ylim(bottom, config.get("max", max(float(ticks[-1]), top)))
        ax.yaxis.set_major_locator(locator)
        if config.get("custom", {}).get("thresholdsStyle", {}).get("mode") == "line":
            for step in config.get("thresholds", {}).get("steps", []):
                if step.get("value") is not None and bottom < step["value"] <= top * 1.1:
                    ax.axhline(step["value"], color=NAMED.get(step["color"]), ls="--", lw=1)
        if not series:
            ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", color=MUTED)

    def state_timeline(self, canvas: Canvas, panel: dict[str, Any], x, y, w, h) -> None:
        from matplotlib import dates

        self.panel_frame(canvas, panel, x, y, w, h)
        config = panel.get("fieldConfig", {}).get("defaults", {})
        mappings: dict[str, dict[str, str]] = {}
        for mapping in config.get("mappings", []):
            if mapping.get("type") == "value":
                mappings.update(mapping["options"])
        series = self.series(panel)
        label_w = max((canvas.text_width(s.label, 7.5) for s in series), default=0) + 16
        left = x + 8 + label_w
        ax = canvas.fig.add_axes(canvas.box(left, y + 28, x + w - 12 - left, h - 28 - 22))
        self.style_axes(ax, None)
        ax.grid(False)
        grid = self.grid()
        times = dates.date2num(self.datetimes(grid))
        step = times[1] - times[0] if len(times) > 1 else 1e-5
        row_height = float(panel.get("options", {}).get("rowHeight", 0.9))
        for row, s in enumerate(reversed(series)):
            values = self.on_grid(s, grid)
            runs = []  # (start index, end index, value): merged equal values
            for i, v in enumerate(values):
                if math.isnan(v):
                    continue
                if runs and runs[-1][1] == i - 1 and runs[-1][2] == v:
                    runs[-1] = (runs[-1][0], i, v)
                else:
                    runs.append((i, i, v))
            for first, last, v in runs:
                shown = mappings.get(str(int(v)) if float(v).is_integer() else str(v), {})
                color = NAMED.get(
                    shown.get("color", ""), threshold_color(v, config, NAMED["green"])
                )
                begin, span = times[first] - step / 2, (last - first + 1) * step
                ax.broken_barh(
                    [(begin, span)], (row - row_height / 2, row_height), color=color, alpha=0.85
                )
                if span > 0.12 * (times[-1] - times[0]):
                    ax.text(
                        begin + span / 2,
                        row,
                        shown.get("text", format_value(v, config.get("unit", "short"))),
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        color="#111217",
                    )
        ax.set_ylim(-0.5, len(series) - 0.5)
        ax.set_xlim(times[0], times[-1])
        ax.set_yticks(range(len(series)), [s.label for s in reversed(series)], fontsize=7.5)
        ax.tick_params(axis="y", length=0, colors=TEXT)

    # -- helpers ---------------------------------------------------------------------------------

    def grid(self) -> list[float]:
        w = self.window
        return [w.start + i * w.step for i in range(int((w.end - w.start) // w.step) + 1)]

    @staticmethod
    def on_grid(series: Series, grid: list[float]) -> Any:
        """The series' values at every step of the range; a step without one is a gap, as in
        Grafana (its nulls are not connected)."""
        import numpy as np

        by_time = dict(zip((round(t) for t in series.times), series.values, strict=True))
        return np.array([by_time.get(round(t), np.nan) for t in grid], dtype=float)

    @staticmethod
    def datetimes(grid: list[float]) -> list[datetime]:
        return [datetime.fromtimestamp(t, UTC) for t in grid]

    def style_axes(self, ax: Any, unit: str | None) -> None:
        from matplotlib import dates, ticker

        ax.set_facecolor(PANEL)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.tick_params(colors=MUTED, labelsize=7.5, length=0, pad=3)
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.set_xlim(
            dates.date2num(datetime.fromtimestamp(self.window.start, UTC)),
            dates.date2num(datetime.fromtimestamp(self.window.end, UTC)),
        )
        minutes = self.window.seconds / 60
        locator = (
            dates.MinuteLocator(interval=max(1, round(minutes / 6)))
            if minutes > 4
            else dates.SecondLocator(bysecond=[0, 30])
        )
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(
            dates.DateFormatter("%H:%M" if minutes > 4 else "%H:%M:%S", tz=UTC)
        )
        if unit is not None:
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: format_value(v, unit)))

    def legend(
        self,
        canvas: Canvas,
        labels: list[str],
        colors: list[str],
        x: float,
        width: float,
        bottom: float,
        top: float,
    ) -> float:
        """Grafana's list legend under the plot: entries flow left to right, wrapping; at most
        a third of the panel's body, the rest said as `+N more`. Returns its height."""
        size, line_h, mark = 7.3, 13, 14
        max_lines = max(1, int((bottom - top) * 0.36 // line_h))
        lines: list[list[tuple[str, str, float]]] = [[]]
        cursor = 0.0
        shown = 0
        for label, color in zip(labels, colors, strict=True):
            entry = mark + 4 + canvas.text_width(label, size) + 12
            if cursor + entry > width and lines[-1]:
                if len(lines) == max_lines:
                    break
                lines.append([])
                cursor = 0.0
            lines[-1].append((label, color, cursor))
            cursor += entry
            shown += 1
        if shown < len(labels):
            more = f"+{len(labels) - shown} more"
            while lines[-1] and lines[-1][-1][2] + canvas.text_width(more, size) + 8 > width - 30:
                lines[-1].pop()
                shown -= 1
            more = f"+{len(labels) - shown} more"
            end = lines[-1][-1] if lines[-1] else None
            at = (
                end[2] + mark + 4 + canvas.text_width(end[0], size) + 12 if end is not None else 0.0
            )
            lines[-1].append((more, "", at))
        height = len(lines) * line_h if labels else 0
        for i, line in enumerate(lines):
            cy = bottom - height + i * line_h + line_h / 2
            for label, color, at in line:
                if color:
                    canvas.rect(x + at, cy - 1.5, mark, 3, color, edge=color, z=2)
                    canvas.text(x + at + mark + 4, cy, label, size)
                else:
                    canvas.text(x + at, cy, label, size, color=MUTED)
        return height


# -- the run -----------------------------------------------------------------------------------


def window_of(start: float, end: float, rate_interval: str) -> Window:
    step = max(SCRAPE_SECONDS, math.ceil((end - start) / 300))
    return Window(start=start, end=end, step=step, rate_interval=rate_interval)


def header_lines(run: dict[str, Any]) -> list[str]:
    window = run["window"]
    lines = [
        "Not a Grafana screenshot: drawn by tools/dashboard_snapshot.py from the panels and the "
        "queries of deploy/observability/grafana/dashboards/saga-orchestrator.json, run against "
        f"Prometheus {run['prometheus']} (Grafana itself could not run on the machine it was made "
        "on).",
        f"Prometheus scraped every process of a real stack every {SCRAPE_SECONDS} s, with "
        f"alerts.yml; queries over the range at a {window['step']} s step, $__rate_interval = "
        f"{window['rate_interval']}.",
        "Mix: " + "; ".join(run["summary"]) + ".",
        "When: " + ", ".join(f"{clock(t)} {what}" for t, what in run["timeline"]) + ".",
        "Alerts firing at the end: " + (", ".join(run["alerts"]) or "none") + ".",
    ]
    return lines


def draw(prometheus: Prometheus, run: dict[str, Any], output: Path, width: int) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    window = Window(**run["window"])
    Renderer(prometheus, dashboard, window).render(output, width, header_lines(run))
    say(f"wrote {output} ({output.stat().st_size // 1024} KB)")


@contextlib.contextmanager
def databases(prefix: str) -> Iterator[dict[str, str]]:
    env = database_env(prefix, postgres_url())
    reset_databases(env)
    try:
        yield env
    finally:
        for url in env.values():
            drop_database(make_url(url).set(drivername="postgresql+psycopg"))


def run(args: argparse.Namespace) -> None:
    began = time.monotonic()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dashboard-shot-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    failed = True
    try:
        with databases(args.db_prefix) as env:
            stack = start_stack(logs, {**env, "APP_ENV": "test", **FAULT_INJECTION_ENV})
            prometheus = Prometheus(work / "tsdb", logs / "prometheus.log", stack)
            mix = Mix(
                stack,
                MixConfig(
                    seconds=args.minutes * 60,
                    concurrency=args.concurrency,
                    max_sagas=args.max_sagas,
                    seed=args.seed,
                ),
            )
            try:
                prometheus.start()
                prometheus.wait_for_targets()
                start = time.time() - SCRAPE_SECONDS
                say(f"prometheus at {prometheus.url}; the stack idles for a baseline")
                time.sleep(10)
                mix.run()
                mix.settle()
                time.sleep(3 * SCRAPE_SECONDS)  # the last state scraped
                end = time.time()
                run_record = {
                    "window": window_of(start, end, args.rate_interval).__dict__,
                    "prometheus": prometheus.version(),
                    "summary": mix.summary(),
                    "timeline": mix.timeline,
                    "alerts": prometheus.firing(),
                }
                (work / "run.json").write_text(json.dumps(run_record, indent=2))
                draw(prometheus, run_record, Path(args.output), args.width)
            finally:
                mix.http.close()
                prometheus.stop()
                stack.stop()
        failed = False
    finally:
        if failed:
            say(f"failed: the processes' logs are in {logs}")
        elif not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    say(f"took {time.monotonic() - began:.0f} s")


def render_again(args: argparse.Namespace) -> None:
    work = Path(args.render_from)
    run_record = json.loads((work / "run.json").read_text())
    if args.rate_interval_given:
        run_record["window"]["rate_interval"] = args.rate_interval
    prometheus = Prometheus(work / "tsdb", work / "logs" / "prometheus-render.log")
    try:
        prometheus.start()
        draw(prometheus, run_record, Path(args.output), args.width)
    finally:
        prometheus.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.dashboard_snapshot", description=__doc__)
    parser.add_argument("--minutes", type=float, default=4.0, help="how long the mix runs")
    parser.add_argument("--output", default=str(OUTPUT.relative_to(ROOT)))
    parser.add_argument("--width", type=int, default=1600, help="the image's width in pixels")
    parser.add_argument("--concurrency", type=int, default=4, help="clients paying at once")
    parser.add_argument("--max-sagas", type=int, default=1500, help="sagas started at most")
    parser.add_argument("--rate-interval", default=None, help="$__rate_interval (30s)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--db-prefix", default=DB_PREFIX, help="the run's databases' prefix")
    parser.add_argument("--keep", help="keep Prometheus' data, the logs and run.json in DIR")
    parser.add_argument("--render-from", help="draw again from a run kept with --keep")
    args = parser.parse_args(argv)
    args.rate_interval_given = args.rate_interval is not None
    args.rate_interval = args.rate_interval or "30s"
    if not 0.5 <= args.minutes <= 30:
        parser.error("--minutes: between 0.5 and 30")
    if args.render_from:
        render_again(args)
    else:
        run(args)
    print(Path(args.output).resolve())


if __name__ == "__main__":
    main()
