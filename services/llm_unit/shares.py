"""Shares of users' rates: how a replica admits most generations without a database round trip.

A user's rate (generations per minute) is counted in the database, so that it holds across
replicas. Rather than one increment per generation, a replica takes a share of the minute's rate at
a time (one conditional increment of the count, never past the rate) and admits from it in memory
until it is used up. The count in the database never passes the rate, so no replica, nor all of
them together, admits more than the rate in a minute. Units a replica took and did not use by the
end of the minute are lost: with several replicas a busy user may be refused up to a share per
other replica before reaching the rate. Rates under SHARE_DIVISOR a minute are taken one unit at a
time, so they are exact.
"""

import datetime

# A share is this fraction of the rate, within 1 and MAX_SHARE units.
SHARE_DIVISOR = 64
MAX_SHARE = 256


def share_of(rate: int) -> int:
    """Units to take from the database at once for a rate (at most the rate itself)."""
    return max(1, min(MAX_SHARE, rate // SHARE_DIVISOR))


class RateShares:
    """Units of this minute taken from the database and not yet used, by user id.

    Lives on one event loop; it is not thread-safe."""

    def __init__(self) -> None:
        self._minute: datetime.datetime | None = None
        self._left: dict[str, int] = {}

    def use(self, user_id: str, minute: datetime.datetime) -> bool:
        """Admits one generation of `user_id` in `minute` from units held, if any."""
        if minute != self._minute:
            return False
        left = self._left.get(user_id, 0)
        if not left:
            return False
        self._left[user_id] = left - 1
        return True

    def keep(self, user_id: str, minute: datetime.datetime, units: int) -> None:
        """Holds `units` taken for `user_id` in `minute` and not used yet. Units of an earlier minute
        than the newest seen are dropped; a later minute drops every unit held."""
        if self._minute is not None and minute < self._minute:
            return
        if minute != self._minute:
            self._minute = minute
            self._left.clear()
        if units:
            self._left[user_id] = self._left.get(user_id, 0) + units

    def clear(self) -> None:
        """Drops every unit held (limits changed: take them afresh at the new rate)."""
        self._left.clear()
