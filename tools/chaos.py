"""`make chaos`: a bounded chaos run against real processes, judged by the saga's invariants.

It starts every process on its own databases, puts a connection-dropping proxy between the
orchestrator and each service, launches N starts at some concurrency (four in five are payments,
one in five a user racing others for a concert seat; a third of the payments are followed by a
refund, a third of those started at the same moment as their payment, racing it; half the
confirmed reservations are cancelled), and for a while:
injects faults into every domain service (503s, answers slower than the client's timeout, lost
answers, refusals), drops connections, kills the orchestrator with SIGKILL at random moments and
restarts it, kills and restarts one domain service, and crashes the PostgreSQL server itself
(`pg_ctl stop -m immediate`: no checkpoint, crash recovery when it starts again a few seconds
later) under every process at once. The database crashes happen on a server of the run's own
(tools/pgcluster.py); with `--pg-restarts 0` the run uses the usual server. Then it lets
everything settle (an operator's retry for any saga that needs one), checks the invariants
(tools/invariants.py) and that no process exited on its own, prints a summary and exits non-zero
on any violation.

    python -m tools.chaos [--sagas 300] [--concurrency 32] [--seconds 30] [--pg-restarts 2]
                          [--seed N]
"""

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from tools.invariants import Databases, Report, check
from tools.pgcluster import Cluster
from tools.proxy import FlakyProxy
from tools.stack import (
    DOMAIN_SERVICES,
    FAULT_INJECTION_ENV,
    Process,
    Stack,
    database_env,
    free_port,
    orchestrator_process,
    postgres_url,
    reset_databases,
)

SERVICE_AUTH = {"Authorization": "Bearer dev-service-token"}
ADMIN_AUTH = {"Authorization": "Bearer dev-admin-token"}
FAULT_POINTS = {
    "order": [
        "start_payment", "complete_payment", "release_payment",
        "start_refund", "complete_refund", "release_refund",
    ],
    "user": ["deduct", "charge_back"],
    "payment": ["approve_payment", "cancel_payment", "refund_payment"],
    "concert": [
        "hold_seat", "confirm_reservation", "release_hold",
        "start_cancellation", "complete_cancellation", "release_cancellation",
    ],
}  # fmt: skip
# Short timeouts and leases, so that faults and kills play out within the run.
ORCHESTRATOR_CHAOS_ENV = {
    "ORCHESTRATOR_STEP_TIMEOUT": "1.0",
    "ORCHESTRATOR_ACTION_ATTEMPTS": "6",
    "ORCHESTRATOR_ACTION_MAX_SECONDS": "15",
    "ORCHESTRATOR_COMPENSATION_ATTEMPTS": "8",
    "ORCHESTRATOR_COMPENSATION_MAX_SECONDS": "20",
    "ORCHESTRATOR_BACKOFF_INITIAL": "0.05",
    "ORCHESTRATOR_BACKOFF_MAX": "1.0",
    "ORCHESTRATOR_LEASE_SECONDS": "3",
    "ORCHESTRATOR_RECOVERY_INTERVAL": "0.5",
}
FINAL = ("COMPLETED", "COMPENSATED")


@dataclass
class ChaosConfig:
    sagas: int = 300
    concurrency: int = 32
    chaos_seconds: float = 30.0
    orchestrator_kills: int = 3
    service_kills: int = 1
    pg_restarts: int = 2
    pg_down_seconds: tuple[float, float] = (2.0, 5.0)
    refund_share: float = 0.3  # of the payments: a refund follows (a third of them racing it)
    cancel_share: float = 0.5  # of the reservations: cancelled once confirmed
    drop_rate: float = 0.02
    seed: int | None = None
    db_prefix: str = "saga_chaos"
    settle_seconds: float = 240.0


@dataclass
class ChaosResult:
    report: Report
    events: Counter = field(default_factory=Counter)
    retried: int = 0
    unsettled: int = 0
    by_type: Counter = field(default_factory=Counter)  # sagas of each type
    seconds: float = 0.0
    exited: list[str] = field(default_factory=list)  # processes that stopped on their own

    @property
    def ok(self) -> bool:
        return self.report.ok and self.unsettled == 0 and not self.exited

    @property
    def reservations(self) -> int:
        return self.by_type["reservation"]


class ChaosRun:
    def __init__(self, config: ChaosConfig, log_dir: Path, say=print):
        self.config = config
        self.log_dir = log_dir
        self.say = say
        self.rng = random.Random(config.seed)
        self.events: Counter = Counter()
        # A server of the run's own, when the run crashes it.
        self.cluster = Cluster() if config.pg_restarts else None
        self.env = {
            **database_env(config.db_prefix, self.cluster.url if self.cluster else postgres_url()),
            "APP_ENV": "test",
            **FAULT_INJECTION_ENV,
        }
        self.stack = Stack()
        self.proxies: dict[str, FlakyProxy] = {}

    # -- the processes -------------------------------------------------------------------------

    def start(self) -> None:
        if self.cluster is not None:
            self.cluster.init().start()
        reset_databases(self.env)
        base = {**os.environ, **self.env}
        platform = Process("data_platform", free_port(), base, self.log_dir / "data_platform.log")
        self.stack.processes["data_platform"] = platform
        for name, package in DOMAIN_SERVICES.items():
            process = Process(package, free_port(), base, self.log_dir / f"{package}.log")
            self.stack.processes[name] = process
            proxy = FlakyProxy(free_port(), process.port, seed=self.rng.random())
            proxy.start()
            self.proxies[name] = proxy
            self.stack.service_urls[f"{name.upper()}_SERVICE_URL"] = (
                f"http://127.0.0.1:{proxy.listen_port}"
            )
        self.stack.processes["orchestrator"] = orchestrator_process(
            self.stack, self.log_dir, "orchestrator", {**self.env, **ORCHESTRATOR_CHAOS_ENV}
        )
        for process in self.stack.processes.values():
            process.start()
        for process in self.stack.processes.values():
            process.wait_healthy()

    def stop(self) -> None:
        self.stack.stop()
        for proxy in self.proxies.values():
            proxy.stop()
        if self.cluster is not None:
            self.cluster.destroy()

    def url(self, name: str, path: str) -> str:
        return f"{self.stack.url(name)}{path}"

    # -- the load ------------------------------------------------------------------------------

    def seed(self, http: httpx.Client) -> tuple[list[int], list[tuple[str, dict]]]:
        """Users whose balances cover about 70% of their orders, so that both outcomes occur, and
        a concert with fewer seats than the users who want them. Returns the users and, per saga,
        its path and body."""
        users, starts = [], []
        per_user = 10
        payments = self.config.sagas - self.config.sagas // 5
        for _ in range(max(1, payments // per_user)):
            amounts = [self.rng.randint(1, 50) * 100 for _ in range(per_user)]
            balance = sum(sorted(amounts)[: int(per_user * 0.7)]) + 5_000  # + two seats
            user = http.post(self.url("user", "/users"), json={"name": "chaos", "balance": balance})
            users.append(user.json()["id"])
            for amount in amounts:
                item = {"product_id": 1, "quantity": 1, "unit_price": amount}
                order = http.post(
                    self.url("order", "/orders"), json={"user_id": users[-1], "items": [item]}
                )
                starts.append(("/payments", {"order_id": order.json()["id"]}))
        starts = starts[:payments]
        seats = max(2, self.config.sagas // 20)
        concert = http.post(
            self.url("concert", "/concerts"),
            json={"title": "chaos", "seats": seats, "price": 2_500},
        ).json()
        for _ in range(self.config.sagas - len(starts)):
            seat = self.rng.choice(concert["seats"])["id"]
            body = {"concert_id": concert["id"], "seat_id": seat, "user_id": self.rng.choice(users)}
            starts.append(("/reservations", body))
        self.rng.shuffle(starts)
        return users, starts

    def start_saga(self, path: str, body: dict | None, key: str, deadline: float) -> str | None:
        """Start a saga, retrying with its key while the orchestrator is down or restarting (or
        answers 503). A start its first step refuses (a seat another user holds or has, an
        order not paid or no longer refundable, a reservation not to be cancelled) is a 409 or
        404 with no saga: None, fine."""
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < deadline:
                try:
                    r = http.post(
                        self.url("orchestrator", path), json=body, headers={"Idempotency-Key": key}
                    )
                    if r.status_code == 202:
                        return r.json()["saga_id"]
                    if r.status_code in (404, 409) and path != "/payments":
                        return None
                except httpx.TransportError:
                    pass
                time.sleep(0.2)  # the orchestrator is restarting
        raise RuntimeError(f"{path} {body}: no orchestrator accepted it in time")

    def final_status(self, saga_id: str, path: str, deadline: float) -> str | None:
        """The saga's status once final (polled, through kills and restarts), or None."""
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < deadline:
                try:
                    status = http.get(self.url("orchestrator", f"{path}/{saga_id}")).json()
                    if status.get("status") in FINAL:
                        return status["status"]
                except (httpx.TransportError, ValueError):
                    pass
                time.sleep(0.3)  # another process's saga: polled
        return None

    def flow(self, start: tuple[str, dict], index: int, deadline: float) -> list[str]:
        """One client's sagas: a payment (and, for some, its refund: started at the same
        moment, racing it, or once it is paid), or a reservation (and, for some, its
        cancellation once it is confirmed)."""
        path, body = start
        started = self.start_saga(path, body, f"chaos-{index}", deadline)
        sagas = [started] if started else []
        undo = self.rng.random()
        if path == "/payments" and undo < self.config.refund_share:
            refund = {"order_id": body["order_id"]}
            if undo < self.config.refund_share / 3:  # the refund races the payment
                raced = self.start_saga("/refunds", refund, f"chaos-refund-{index}", deadline)
                self.events["refunds racing their payment"] += 1
                return sagas + ([raced] if raced else [])
            if started and self.final_status(started, path, deadline) == "COMPLETED":
                refunded = self.start_saga("/refunds", refund, f"chaos-refund-{index}", deadline)
                sagas += [refunded] if refunded else []
        confirmed = path == "/reservations" and started and undo < self.config.cancel_share
        if confirmed and self.final_status(started, path, deadline) == "COMPLETED":
            cancel = f"/reservations/{started}/cancel"
            cancelled = self.start_saga(cancel, None, f"chaos-cancel-{index}", deadline)
            sagas += [cancelled] if cancelled else []
        return sagas

    # -- the chaos -----------------------------------------------------------------------------

    def inject_fault(self, http: httpx.Client) -> None:
        service = self.rng.choice(list(FAULT_POINTS))
        mode = self.rng.choice(["error", "error", "delay", "lose_response", "refuse"])
        rule = {
            "point": self.rng.choice(FAULT_POINTS[service]),
            "mode": mode,
            "times": self.rng.randint(1, 3),
            "delay_ms": 1_500 if mode == "delay" else 0,  # past the 1 s client timeout
        }
        try:
            http.post(self.url(service, "/_faults"), json=rule, headers=SERVICE_AUTH)
            self.events[f"fault {mode}"] += 1
        except httpx.TransportError:
            pass  # that service is being killed right now

    def kill_and_restart(self, name: str) -> None:
        process = self.stack.processes[name]
        process.kill()
        self.events[f"SIGKILL {name}"] += 1
        time.sleep(self.rng.uniform(0.2, 1.5))  # down for a moment, as a crashed pod would be
        process.restart()

    def crash_and_restart_postgres(self) -> None:
        """The database server crashes under every process, and starts again (crash recovery)
        a few seconds later. Nobody restarts the processes: each must carry on by itself."""
        self.cluster.crash()
        self.events["crash-restart postgres"] += 1
        time.sleep(self.rng.uniform(*self.config.pg_down_seconds))  # down, as a crash leaves it
        self.cluster.start()

    def kills(self) -> None:
        """SIGKILL the orchestrator and a domain service, and crash the database, at random
        moments, one at a time (a process restarting migrates its database, which must be up)."""
        seconds = self.config.chaos_seconds
        schedule = (
            [
                ("orchestrator", self.rng.uniform(0.1, 0.9) * seconds)
                for _ in range(self.config.orchestrator_kills)
            ]
            + [
                (self.rng.choice(list(DOMAIN_SERVICES)), self.rng.uniform(0.2, 0.8) * seconds)
                for _ in range(self.config.service_kills)
            ]
            + [
                ("postgres", self.rng.uniform(0.1, 0.9) * seconds)
                for _ in range(self.config.pg_restarts)
            ]
        )
        began = time.monotonic()
        for name, at in sorted(schedule, key=lambda kill: kill[1]):
            time.sleep(max(0.0, at - (time.monotonic() - began)))  # the schedule, not a wait
            if name == "postgres":
                self.crash_and_restart_postgres()
            else:
                self.kill_and_restart(name)

    def chaos(self, stop: threading.Event) -> None:
        """Faults and dropped connections for `chaos_seconds`, kills on their own schedule."""
        killer = threading.Thread(target=self.kills, daemon=True)
        killer.start()
        for proxy in self.proxies.values():
            proxy.drop_rate = self.config.drop_rate
        began = time.monotonic()
        with httpx.Client(timeout=5) as http:
            while not stop.is_set() and time.monotonic() - began < self.config.chaos_seconds:
                self.inject_fault(http)
                stop.wait(0.3)
            killer.join()
            for proxy in self.proxies.values():
                proxy.drop_rate = 0.0
            for service in FAULT_POINTS:
                http.delete(self.url(service, "/_faults"), headers=SERVICE_AUTH)
        self.events["dropped connections"] = sum(p.dropped for p in self.proxies.values())

    # -- settling ------------------------------------------------------------------------------

    def statuses(self, saga_ids: list[str]) -> dict[str, str]:
        with psycopg.connect(self.env["ORCHESTRATOR_DATABASE_URL"]) as conn:
            rows = conn.execute(
                "SELECT id::text, status FROM sagas WHERE id = ANY(%s::uuid[])", (saga_ids,)
            ).fetchall()
        return dict(rows)

    def settle(self, saga_ids: list[str]) -> tuple[int, int]:
        """Wait until every saga is final; retry, as an operator would, those that need it."""
        retried = 0
        deadline = time.monotonic() + self.config.settle_seconds
        with httpx.Client(timeout=10) as http:
            while True:
                statuses = self.statuses(saga_ids)
                pending = [s for s in saga_ids if statuses.get(s) not in FINAL]
                if not pending or time.monotonic() > deadline:
                    return retried, len(pending)
                for saga_id in pending:
                    if statuses.get(saga_id) == "NEEDS_ATTENTION":
                        http.post(
                            self.url("orchestrator", f"/admin/sagas/{saga_id}/retry"),
                            headers=ADMIN_AUTH,
                        )
                        retried += 1
                time.sleep(0.5)  # polling the databases of processes we do not run in-process

    def run(self) -> ChaosResult:
        began = time.monotonic()
        self.start()
        try:
            with httpx.Client(timeout=10) as http:
                users, starts = self.seed(http)
            self.say(
                f"chaos: {len(starts)} starts, concurrency {self.config.concurrency}, "
                f"{self.config.chaos_seconds:.0f}s of faults, logs in {self.log_dir}"
            )
            stop = threading.Event()
            chaos = threading.Thread(target=self.chaos, args=(stop,), daemon=True)
            chaos.start()
            deadline = time.monotonic() + self.config.chaos_seconds + 120
            with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
                flows = pool.map(lambda i: self.flow(starts[i], i, deadline), range(len(starts)))
                # Once each: two starts may answer one saga (the same seat and user, by its
                # lock key), and a saga counted twice would be a saga that does not exist.
                saga_ids = list(dict.fromkeys(s for sagas in flows for s in sagas))
            chaos.join()
            retried, unsettled = self.settle(saga_ids)
            report = check(self.databases(), saga_ids, users)
            by_type = self.count_by_type(saga_ids)
            exited = [
                name
                for name, process in self.stack.processes.items()
                if process.popen.poll() is not None
            ]
        finally:
            self.stop()
        return ChaosResult(
            report,
            self.events,
            retried,
            unsettled,
            by_type,
            time.monotonic() - began,
            exited,
        )

    def count_by_type(self, saga_ids: list[str]) -> Counter:
        with psycopg.connect(self.env["ORCHESTRATOR_DATABASE_URL"]) as conn:
            return Counter(
                dict(
                    conn.execute(
                        "SELECT type, count(*) FROM sagas WHERE id = ANY(%s::uuid[]) GROUP BY type",
                        (saga_ids,),
                    ).fetchall()
                )
            )

    def databases(self) -> Databases:
        return Databases(
            orders=self.env["ORDERS_DATABASE_URL"],
            users=self.env["USERS_DATABASE_URL"],
            payments=self.env["PAYMENTS_DATABASE_URL"],
            orchestrator=self.env["ORCHESTRATOR_DATABASE_URL"],
            concerts=self.env["CONCERTS_DATABASE_URL"],
        )


def summary(result: ChaosResult) -> str:
    report = result.report
    rows = [
        ("sagas", report.sagas),
        ("of which reservations", result.by_type["reservation"]),
        ("of which refunds", result.by_type["refund"]),
        ("of which reservation cancellations", result.by_type["reservation_cancellation"]),
        ("COMPLETED", report.by_status.get("COMPLETED", 0)),
        ("COMPENSATED", report.by_status.get("COMPENSATED", 0)),
        ("needed an operator's retry", result.retried),
        ("not final at the end", result.unsettled),
        ("processes that exited on their own", len(result.exited)),
        *sorted(result.events.items()),
        ("opening balances", report.money.get("opening")),
        ("balances now", report.money.get("balances")),
        ("approved payments", report.money.get("approved")),
        ("invariant violations", len(report.violations)),
        ("seconds", f"{result.seconds:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {name:<{width}} | {value!s:>9} |" for name, value in rows]
    rule = f"|{'-' * (width + 2)}|{'-' * 11}|"
    table = "\n".join([f"| {'chaos run':<{width}} | {'':>9} |", rule, *lines])
    verdict = "PASS: every invariant holds" if result.ok else "FAIL"
    return "\n".join([table, *[f"  violation: {v}" for v in report.violations[:50]], verdict])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos", description=__doc__.split("\n")[0]
    )
    defaults = ChaosConfig()
    parser.add_argument("--sagas", type=int, default=defaults.sagas)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--seconds", type=float, default=defaults.chaos_seconds)
    parser.add_argument(
        "--pg-restarts",
        type=int,
        default=defaults.pg_restarts,
        help="crash-restarts of the PostgreSQL server (default %(default)s; 0: run on the usual "
        "server, not one of the run's own)",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    config = ChaosConfig(
        sagas=args.sagas,
        concurrency=args.concurrency,
        chaos_seconds=args.seconds,
        pg_restarts=args.pg_restarts,
        seed=seed,
    )
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"chaos: seed {seed} (--seed {seed} makes the same random choices; timing still varies)")
    result = ChaosRun(config, log_dir).run()
    print(summary(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
