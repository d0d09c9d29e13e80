"""The order sides run in: balanced, so no side always runs in another's wake."""

import collections

from bench.sides import order_of_round


def test_every_order_in_turn_puts_each_side_first_and_after_each_other_equally_often():
    sides = ["off", "on", "limits"]
    orders = [order_of_round(sides, round_) for round_ in range(6)]
    assert len(set(map(tuple, orders))) == 6
    firsts = collections.Counter(order[0] for order in orders)
    assert firsts == {"off": 2, "on": 2, "limits": 2}
    followings = collections.Counter((a, b) for order in orders for a, b in zip(order, order[1:]))
    assert followings == {(a, b): 2 for a in sides for b in sides if a != b}


def test_two_sides_alternate():
    assert [order_of_round(["a", "b"], round_) for round_ in range(3)] == [["a", "b"], ["b", "a"], ["a", "b"]]
