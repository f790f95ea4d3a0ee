"""The invariants of the sagas, checked from the databases themselves, as an auditor would.

For a set of sagas (payments, reservations, refunds, reservation cancellations) and the users
whose money they moved:
- every saga is final: COMPLETED or COMPENSATED;
- money is conserved: opening balances = current balances + APPROVED payments;
- a payment saga COMPLETED <=> the order is PAID (or REFUNDED, by a completed refund) <=> exactly
  one APPROVED payment of the order's amount (or, refunded, that payment CANCELLED) <=> exactly
  one net deduction of that amount under the saga's keys;
- a payment saga COMPENSATED <=> no payment of the order by it, net deduction zero;
- a refund COMPLETED <=> the order is REFUNDED, its payment CANCELLED, and the amount credited
  back exactly once under the refund's keys; a refund COMPENSATED <=> net credit zero;
- an order PAID has one completed payment saga and no completed refund; REFUNDED has one of
  each; no order is left PAYMENT_IN_PROGRESS or REFUND_IN_PROGRESS;
- for a reservation: COMPLETED <=> the reservation is CONFIRMED (or CANCELLED by a completed
  cancellation) <=> one APPROVED payment of its price (or that payment CANCELLED) <=> one net
  deduction of it; COMPENSATED <=> its seat is neither held nor reserved by it, no APPROVED
  payment, net deduction zero; no seat is reserved twice;
- a cancellation COMPLETED <=> the reservation is CANCELLED, its payment CANCELLED, the price
  credited back once; COMPENSATED <=> net credit zero; none is left CANCELLING;
- no balance was ever negative (every balance the ledger recorded), and the ledger adds up to
  the balance;
- no idempotency key was applied twice.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

FINAL = ("COMPLETED", "COMPENSATED")


@dataclass
class Databases:
    orders: str
    users: str
    payments: str
    orchestrator: str
    concerts: str | None = None


@dataclass
class Report:
    sagas: int = 0
    by_status: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    money: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


def _rows(url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


@dataclass(frozen=True)
class _Saga:
    id: str
    type: str
    status: str
    payload: dict[str, Any]
    results: dict[str, Any]


def check(dbs: Databases, saga_ids: list[str], user_ids: list[int]) -> Report:
    saga_ids = list(dict.fromkeys(saga_ids))  # each saga once, however often it was named
    report = Report(sagas=len(saga_ids))
    bad = report.violations.append
    recorded = [
        _Saga(str(i), t, status, payload, results)
        for i, t, status, payload, results in _rows(
            dbs.orchestrator,
            "SELECT id, type, status, payload, results FROM sagas WHERE id = ANY(%s::uuid[])",
            (saga_ids,),
        )
    ]
    found = {s.id for s in recorded}
    for saga_id in saga_ids:
        if saga_id not in found:
            bad(f"saga {saga_id} was never recorded")
    for saga in recorded:
        report.by_status[saga.status] += 1
        if saga.status not in FINAL:
            bad(f"saga {saga.id} ({saga.type}) is {saga.status}, not final")
    by_type: dict[str, list[_Saga]] = defaultdict(list)
    for saga in recorded:
        by_type[saga.type].append(saga)

    ledger = _rows(
        dbs.users,
        "SELECT user_id, delta, balance_after, reason, idempotency_key FROM balance_ledger"
        " WHERE user_id = ANY(%s) ORDER BY id",
        (user_ids,),
    )
    net_by_saga: dict[str, int] = defaultdict(int)
    for _, delta, _, reason, key in ledger:
        if key and reason != "OPENING":
            net_by_saga[key.split(":", 1)[0]] += delta

    _check_orders(dbs, by_type["payment"], by_type["refund"], net_by_saga, report)
    if by_type["reservation"] or by_type["reservation_cancellation"]:
        _check_reservations(
            dbs, by_type["reservation"], by_type["reservation_cancellation"], net_by_saga, report
        )

    keys = Counter(key for _, _, _, _, key in ledger if key)
    for key, count in keys.items():
        if count > 1:
            bad(f"idempotency key {key} was applied {count} times")
    balances = dict(
        _rows(dbs.users, "SELECT id, balance FROM users WHERE id = ANY(%s)", (user_ids,))
    )
    running: dict[int, int] = defaultdict(int)
    for user_id, delta, balance_after, _, _ in ledger:
        running[user_id] += delta
        if balance_after < 0 or running[user_id] != balance_after:
            bad(f"user {user_id}: ledger balance {balance_after}, recomputed {running[user_id]}")
    for user_id, balance in balances.items():
        if balance < 0 or running[user_id] != balance:
            bad(f"user {user_id}: balance {balance}, ledger says {running[user_id]}")

    opening = sum(delta for _, delta, _, reason, _ in ledger if reason == "OPENING")
    all_approved = _rows(
        dbs.payments,
        "SELECT coalesce(sum(amount), 0) FROM payments WHERE status = 'APPROVED'"
        " AND user_id = ANY(%s)",
        (user_ids,),
    )[0][0]
    report.money = {
        "opening": opening,
        "balances": sum(balances.values()),
        "approved": int(all_approved),
    }
    if opening != report.money["balances"] + report.money["approved"]:
        bad(f"money not conserved: {report.money}")
    return report


def _payments_of(dbs: Databases, column: str, ids: list[int]) -> dict[int, Counter]:
    """{order or reservation id: Counter of (status, amount)} of their payments."""
    found: dict[int, Counter] = defaultdict(Counter)
    for owner, status, amount in _rows(
        dbs.payments,
        f"SELECT {column}, status, amount FROM payments WHERE {column} = ANY(%s)",
        (ids,),
    ):
        found[owner][(status, amount)] += 1
    return found


def _check_orders(
    dbs: Databases,
    payments: list[_Saga],
    refunds: list[_Saga],
    net_by_saga: dict[str, int],
    report: Report,
) -> None:
    bad = report.violations.append
    order_ids = sorted({s.payload["order_id"] for s in (*payments, *refunds)})
    orders = {
        order_id: (status, amount)
        for order_id, status, amount in _rows(
            dbs.orders, "SELECT id, status, amount FROM orders WHERE id = ANY(%s)", (order_ids,)
        )
    }
    paid = _payments_of(dbs, "order_id", order_ids)
    completed = Counter(s.payload["order_id"] for s in payments if s.status == "COMPLETED")
    refunded = Counter(s.payload["order_id"] for s in refunds if s.status == "COMPLETED")
    for saga in payments:
        order_id = saga.payload["order_id"]
        status, amount = orders.get(order_id, (None, None))
        net = net_by_saga.get(saga.id, 0)
        if saga.status == "COMPLETED":
            expected = "REFUNDED" if refunded[order_id] else "PAID"
            kept = "CANCELLED" if refunded[order_id] else "APPROVED"
            if status != expected:
                bad(f"payment saga {saga.id} COMPLETED but order {order_id} is {status}")
            if paid[order_id] != Counter({(kept, amount): 1}):
                bad(f"payment saga {saga.id} COMPLETED but order {order_id} has {paid[order_id]}")
            if amount is None or net != -amount:
                bad(f"payment saga {saga.id} COMPLETED but its net deduction is {net}")
        elif saga.status == "COMPENSATED" and net != 0:
            bad(f"payment saga {saga.id} COMPENSATED but its net deduction is {net}")
    for saga in refunds:
        order_id = saga.payload["order_id"]
        status, amount = orders.get(order_id, (None, None))
        net = net_by_saga.get(saga.id, 0)
        if saga.status == "COMPLETED":
            if status != "REFUNDED":
                bad(f"refund {saga.id} COMPLETED but order {order_id} is {status}")
            if paid[order_id][("APPROVED", amount)]:
                bad(f"refund {saga.id} COMPLETED but order {order_id} has {paid[order_id]}")
            if net != saga.payload["amount"]:
                bad(f"refund {saga.id} COMPLETED but its net credit is {net}")
        elif saga.status == "COMPENSATED" and net != 0:
            bad(f"refund {saga.id} COMPENSATED but its net credit is {net}")
    for order_id, (status, _) in orders.items():
        if status in ("PAYMENT_IN_PROGRESS", "REFUND_IN_PROGRESS"):
            bad(f"order {order_id} is still {status}")
        if status == "PAID" and (completed[order_id] != 1 or refunded[order_id]):
            bad(f"order {order_id} is PAID with {completed[order_id]} payments, refunded")
        if status == "REFUNDED" and (completed[order_id] != 1 or refunded[order_id] != 1):
            bad(f"order {order_id} is REFUNDED by {refunded[order_id]} refunds")
        approved = sum(n for (s, _), n in paid[order_id].items() if s == "APPROVED")
        if status != "PAID" and approved:
            bad(f"order {order_id} is {status} but has approved payments {paid[order_id]}")


def _check_reservations(
    dbs: Databases,
    reservations: list[_Saga],
    cancellations: list[_Saga],
    net_by_saga: dict[str, int],
    report: Report,
) -> None:
    bad = report.violations.append
    assert dbs.concerts is not None, "reservation sagas need the concerts database"

    def reservation_of(saga: _Saga) -> int | None:
        return (saga.results.get("hold_seat") or {}).get("reservation_id")

    ids = [r for r in (reservation_of(s) for s in reservations) if r is not None]
    ids += [s.payload["reservation_id"] for s in cancellations]
    rows = {
        rid: (status, seat_id, price)
        for rid, status, seat_id, price in _rows(
            dbs.concerts,
            "SELECT id, status, seat_id, price FROM reservations WHERE id = ANY(%s)",
            (ids,),
        )
    }
    paid = _payments_of(dbs, "reservation_id", ids)
    cancelled = Counter(
        s.payload["reservation_id"] for s in cancellations if s.status == "COMPLETED"
    )
    confirmed_seats: Counter = Counter()
    for saga in reservations:
        reservation_id = reservation_of(saga)
        status, seat_id, price = rows.get(reservation_id, (None, None, None))
        payments = paid[reservation_id] if reservation_id else Counter()
        net = net_by_saga.get(saga.id, 0)
        if saga.status == "COMPLETED":
            expected = "CANCELLED" if cancelled[reservation_id] else "CONFIRMED"
            kept = "CANCELLED" if cancelled[reservation_id] else "APPROVED"
            if expected == "CONFIRMED":
                confirmed_seats[seat_id] += 1
            if status != expected:
                bad(f"reservation saga {saga.id} COMPLETED but its reservation is {status}")
            if payments != Counter({(kept, price): 1}):
                bad(f"reservation saga {saga.id} COMPLETED but its payments are {payments}")
            if price is None or net != -price:
                bad(f"reservation saga {saga.id} COMPLETED but net deduction {net}")
        elif saga.status == "COMPENSATED":
            if status in ("HELD", "CONFIRMED", "CANCELLING"):
                bad(f"reservation saga {saga.id} COMPENSATED but its reservation is {status}")
            if any(s == "APPROVED" for s, _ in payments):
                bad(f"reservation saga {saga.id} COMPENSATED but approved {payments}")
            if net != 0:
                bad(f"reservation saga {saga.id} COMPENSATED but net deduction {net}")
    for saga in cancellations:
        reservation_id = saga.payload["reservation_id"]
        status, _, _ = rows.get(reservation_id, (None, None, None))
        net = net_by_saga.get(saga.id, 0)
        if saga.status == "COMPLETED":
            if status != "CANCELLED":
                bad(f"cancellation {saga.id} COMPLETED but its reservation is {status}")
            if any(s == "APPROVED" for s, _ in paid[reservation_id]):
                bad(f"cancellation {saga.id} COMPLETED but approved {paid[reservation_id]}")
            if net != saga.payload["amount"]:
                bad(f"cancellation {saga.id} COMPLETED but its net credit is {net}")
        elif saga.status == "COMPENSATED" and net != 0:
            bad(f"cancellation {saga.id} COMPENSATED but its net credit is {net}")
    for reservation_id, (status, _, _) in rows.items():
        if status == "CANCELLING":
            bad(f"reservation {reservation_id} is still CANCELLING")
    for seat_id, count in confirmed_seats.items():
        if count > 1:
            bad(f"seat {seat_id} is reserved by {count} sagas")
