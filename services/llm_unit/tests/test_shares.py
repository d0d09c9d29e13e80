"""Shares of users' rates held by a replica: their size, and the units of a minute used up, dropped
when the minute ends, and never mixed across minutes."""

import datetime

from services.llm_unit.shares import MAX_SHARE, RateShares, share_of

MINUTE = datetime.datetime(2026, 12, 3, 17, 0, tzinfo=datetime.timezone.utc)
NEXT = MINUTE + datetime.timedelta(minutes=1)


def test_rates_under_the_divisor_are_taken_one_at_a_time_and_shares_are_capped():
    assert [share_of(rate) for rate in (1, 63, 64, 6_400, 1_000_000)] == [1, 1, 1, 100, MAX_SHARE]


def test_units_held_are_used_once_each_and_only_in_their_minute():
    held = RateShares()
    assert not held.use("u1", MINUTE)
    held.keep("u1", MINUTE, 2)
    assert held.use("u1", MINUTE) and held.use("u1", MINUTE) and not held.use("u1", MINUTE)
    held.keep("u1", MINUTE, 1)
    assert not held.use("u2", MINUTE) and not held.use("u1", NEXT)

    held.keep("u2", NEXT, 1)  # the next minute: what was left of the last one is gone
    assert held.use("u2", NEXT) and not held.use("u1", NEXT)
    held.keep("u1", MINUTE, 5)  # taken late for a minute that has ended: dropped
    assert not held.use("u1", MINUTE) and not held.use("u1", NEXT)


def test_clearing_drops_every_unit_held():
    held = RateShares()
    held.keep("u1", MINUTE, 3)
    held.clear()
    assert not held.use("u1", MINUTE)
