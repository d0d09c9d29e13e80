"""Which users have instruction recording on, as this process last saw it: saves a user unit hop per instruction."""

import itertools
import time

# Seconds a user's recording flag is trusted without asking the user unit again. A change made
# through this process is seen by the next instruction (its result updates the flag); a change
# made through another orchestrator replica is seen here within this many seconds.
RECORDING_FLAG_TTL_S = 1.0
# Users whose flag is kept; past it the oldest entries go (a miss costs one BatchGetUsers).
RECORDING_FLAG_ENTRIES = 10_000


class RecordingFlags:
    """Which users have recording on, as last seen by this process; saves a user unit hop per instruction.

    A flag this process changed wins over one read by a lookup that began before the change, so a
    slow lookup never brings the old value back.
    """

    def __init__(self, ttl_s: float = RECORDING_FLAG_TTL_S, entries: int = RECORDING_FLAG_ENTRIES,
                 clock=time.monotonic):
        self._ttl_s = ttl_s
        self._entries = entries
        self._clock = clock
        self._ticks = itertools.count(1)
        # user_id -> (recording on, or None when it must be looked up; expires at; tick of the write)
        self._flags: dict[str, tuple[bool | None, float, int]] = {}

    def known(self, user_ids: list[str]) -> dict[str, bool]:
        """The flags still fresh among `user_ids`."""
        now = self._clock()
        fresh = {}
        for user_id in user_ids:
            entry = self._flags.get(user_id)
            if entry is not None and entry[0] is not None and entry[1] > now:
                fresh[user_id] = entry[0]
        return fresh

    def tick(self) -> int:
        """A mark taken before a lookup; pass it to `looked_up`."""
        return next(self._ticks)

    def looked_up(self, since_tick: int, flags: dict[str, bool]) -> None:
        """Flags read from the user unit by a lookup that began at `since_tick`."""
        for user_id, flag in flags.items():
            entry = self._flags.get(user_id)
            if entry is None or entry[2] < since_tick:
                self._put(user_id, flag)

    def changed(self, user_id: str, flag: bool | None) -> None:
        """A change this process made: the new flag, or None when it is not known."""
        self._put(user_id, flag)

    def _put(self, user_id: str, flag: bool | None) -> None:
        self._flags.pop(user_id, None)  # re-inserted last: the dict's order is the eviction order
        self._flags[user_id] = (flag, self._clock() + self._ttl_s, next(self._ticks))
        while len(self._flags) > self._entries:
            del self._flags[next(iter(self._flags))]
