"""The order's status machine is its table of moves (`OrderMove`), the one source the use cases
make their compare-and-sets from."""

import pytest

from order_service.domain import OrderMove, OrderStatus


def ways_out(status: OrderStatus) -> set[OrderStatus]:
    return {move.target for move in OrderMove if move.source is status}


def test_every_status_is_reached_from_pending():
    reached, frontier = {OrderStatus.PENDING}, [OrderStatus.PENDING]
    while frontier:
        for target in ways_out(frontier.pop()) - reached:
            reached.add(target)
            frontier.append(target)
    assert reached == set(OrderStatus)


@pytest.mark.parametrize(
    ("status", "targets"),
    [
        (OrderStatus.PENDING, {OrderStatus.PAYMENT_IN_PROGRESS, OrderStatus.CANCELLED}),
        (OrderStatus.PAYMENT_IN_PROGRESS, {OrderStatus.PAID, OrderStatus.PENDING}),
        (OrderStatus.PAID, {OrderStatus.REFUND_IN_PROGRESS}),
        (OrderStatus.REFUND_IN_PROGRESS, {OrderStatus.REFUNDED, OrderStatus.PAID}),
        (OrderStatus.CANCELLED, set()),
        (OrderStatus.REFUNDED, set()),
    ],
)
def test_each_status_has_exactly_its_ways_out(status: OrderStatus, targets: set[OrderStatus]):
    assert ways_out(status) == targets


def test_no_move_is_declared_twice():
    pairs = [(move.source, move.target) for move in OrderMove]
    assert len(pairs) == len(set(pairs))
