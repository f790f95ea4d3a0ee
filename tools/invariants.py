"""The invariants of the payment saga, checked from the databases themselves, as an auditor would.

For a set of payment and reservation sagas (and the users whose money they moved):
- every saga is final: COMPLETED or COMPENSATED;
- money is conserved: opening balances = current balances + APPROVED payments;
- COMPLETED <=> the order is PAID <=> exactly one APPROVED payment of the order's amount <=>
  exactly one net deduction of that amount under the saga's keys;
- COMPENSATED <=> the order is not PAID, no APPROVED payment, net deduction zero;
- for a reservation: COMPLETED <=> the reservation is CONFIRMED <=> exactly one APPROVED payment
  of its price <=> one net deduction of it; COMPENSATED <=> its seat is neither held nor reserved
  by it, no APPROVED payment, net deduction zero; no seat is reserved twice;
- no balance was ever negative (every balance the ledger recorded), and the ledger adds up to
  the balance;
- no idempotency key was applied twice.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import psycopg


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


def check(dbs: Databases, saga_ids: list[str], user_ids: list[int]) -> Report:
    report = Report(sagas=len(saga_ids))
    bad = report.violations.append

    recorded = _rows(
        dbs.orchestrator,
        "SELECT id, type, status, payload, results FROM sagas WHERE id = ANY(%s::uuid[])",
        (saga_ids,),
    )
    sagas = {str(i): (status, p["order_id"]) for i, t, status, p, _ in recorded if t == "payment"}
    reservation_sagas = {
        str(i): (status, (results.get("hold_seat") or {}).get("reservation_id"))
        for i, t, status, _, results in recorded
        if t == "reservation"
    }
    for saga_id in saga_ids:
        if saga_id not in sagas and saga_id not in reservation_sagas:
            bad(f"saga {saga_id} was never recorded")
    order_ids = sorted({order_id for _, order_id in sagas.values()})
    orders = {
        order_id: (status, amount, user_id)
        for order_id, status, amount, user_id in _rows(
            dbs.orders,
            "SELECT id, status, amount, user_id FROM orders WHERE id = ANY(%s)",
            (order_ids,),
        )
    }
    approved: dict[int, list[int]] = defaultdict(list)
    for order_id, amount in _rows(
        dbs.payments,
        "SELECT order_id, amount FROM payments WHERE status = 'APPROVED' AND order_id = ANY(%s)",
        (order_ids,),
    ):
        approved[order_id].append(amount)
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

    completed_orders = Counter()
    for saga_id, (status, order_id) in sagas.items():
        report.by_status[status] += 1
        order_status, amount, _ = orders.get(order_id, (None, None, None))
        payments = approved.get(order_id, [])
        net = net_by_saga.get(saga_id, 0)
        if status == "COMPLETED":
            completed_orders[order_id] += 1
            if order_status != "PAID":
                bad(f"saga {saga_id} COMPLETED but order {order_id} is {order_status}")
            if payments != [amount]:
                bad(f"saga {saga_id} COMPLETED but order {order_id} has approved {payments}")
            if net != -amount:
                bad(f"saga {saga_id} COMPLETED but its net deduction is {net}, not {-amount}")
        elif status == "COMPENSATED":
            if order_status == "PAID":
                bad(f"saga {saga_id} COMPENSATED but order {order_id} is PAID")
            if net != 0:
                bad(f"saga {saga_id} COMPENSATED but its net deduction is {net}")
        else:
            bad(f"saga {saga_id} is {status}, not final")
    for order_id, (status, _, _) in orders.items():
        if status == "PAID" and completed_orders[order_id] != 1:
            bad(f"order {order_id} is PAID by {completed_orders[order_id]} completed sagas")
        if status == "PAYMENT_IN_PROGRESS":
            bad(f"order {order_id} is still PAYMENT_IN_PROGRESS")
        if status != "PAID" and approved.get(order_id):
            bad(f"order {order_id} is {status} but has approved payments {approved[order_id]}")

    if reservation_sagas:
        _check_reservations(dbs, reservation_sagas, net_by_saga, report)

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


def _check_reservations(
    dbs: Databases,
    sagas: dict[str, tuple[str, int | None]],
    net_by_saga: dict[str, int],
    report: Report,
) -> None:
    bad = report.violations.append
    assert dbs.concerts is not None, "reservation sagas need the concerts database"
    reservation_ids = [r for _, r in sagas.values() if r is not None]
    reservations = {
        rid: (status, seat_id, price)
        for rid, status, seat_id, price in _rows(
            dbs.concerts,
            "SELECT id, status, seat_id, price FROM reservations WHERE id = ANY(%s)",
            (reservation_ids,),
        )
    }
    approved: dict[int, list[int]] = defaultdict(list)
    for reservation_id, amount in _rows(
        dbs.payments,
        "SELECT reservation_id, amount FROM payments WHERE status = 'APPROVED'"
        " AND reservation_id = ANY(%s)",
        (reservation_ids,),
    ):
        approved[reservation_id].append(amount)
    confirmed_seats: Counter = Counter()
    for saga_id, (status, reservation_id) in sagas.items():
        report.by_status[status] += 1
        r_status, seat_id, price = reservations.get(reservation_id, (None, None, None))
        payments = approved.get(reservation_id, []) if reservation_id else []
        net = net_by_saga.get(saga_id, 0)
        if status == "COMPLETED":
            confirmed_seats[seat_id] += 1
            if r_status != "CONFIRMED":
                bad(f"reservation saga {saga_id} COMPLETED but its reservation is {r_status}")
            if payments != [price]:
                bad(f"reservation saga {saga_id} COMPLETED but approved {payments}")
            if price is None or net != -price:
                bad(f"reservation saga {saga_id} COMPLETED but net deduction {net}")
        elif status == "COMPENSATED":
            if r_status in ("HELD", "CONFIRMED"):
                bad(f"reservation saga {saga_id} COMPENSATED but its reservation is {r_status}")
            if payments:
                bad(f"reservation saga {saga_id} COMPENSATED but approved {payments}")
            if net != 0:
                bad(f"reservation saga {saga_id} COMPENSATED but net deduction {net}")
        else:
            bad(f"saga {saga_id} is {status}, not final")
    for seat_id, count in confirmed_seats.items():
        if count > 1:
            bad(f"seat {seat_id} is reserved by {count} sagas")
