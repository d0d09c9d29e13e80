"""The tokens users have spent today and this month, kept for their budgets' checks.

A generation's admission must not wait on the database for them. They are read for many users at
once and kept: past `ttl` a kept value is still used for up to `stale_for` more, while it is read
again in the background (the users seen within GATHER_SECONDS together, one read at a time).
Tokens this replica writes are added to what it keeps as they are written; those written through
other replicas count once read again.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# (user id, day start, month start)
Key = tuple[str, datetime.datetime, datetime.datetime]
# (tokens spent that day, that month)
Spent = tuple[int, int]
# Users read in one statement at most.
MAX_READ = 1_000
# Seconds a read in the background waits for other users' to join it: no generation waits on it,
# and a burst of returning users read one by one as they come costs a statement (and a database
# thread hop) each.
GATHER_SECONDS = 0.05


@dataclasses.dataclass
class _Entry:
    spent: Spent
    read_at: float  # when the read that gave it ended (this module's clock)


class SpentTokens:
    """Spent tokens by user, day and month. Lives on one event loop; it is not thread-safe."""

    def __init__(self, read: Callable[[list[Key]], Awaitable[list[Spent]]], ttl: float, stale_for: float,
                 max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        """`read`: the spent tokens of each key, in order, from the database."""
        self._read = read
        self._ttl, self._stale_for = ttl, stale_for
        self._max_entries = max_entries
        self._clock = clock
        self._entries: collections.OrderedDict[Key, _Entry] = collections.OrderedDict()
        self._wanted: dict[Key, list[asyncio.Future[Spent]]] = {}  # to read next, with who waits
        self._reading: set[Key] = set()  # in the read in flight
        self._written_while_read: set[Key] = set()
        self._task: asyncio.Task | None = None
        self._soon = False  # a read scheduled for this loop turn's end (someone waits)
        self._later: asyncio.TimerHandle | None = None  # one gathering refreshes
        self._failing = False  # the last read failed (said once in the log, until one succeeds)

    async def get(self, key: Key) -> Spent:
        entry = self._entries.get(key)
        if entry is not None:
            age = self._clock() - entry.read_at
            if age < self._ttl + self._stale_for:
                if age >= self._ttl and key not in self._reading:
                    self._want(key)  # in the background
                return entry.spent
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # its caller may have gone
        self._want(key, future)
        return await asyncio.shield(future)

    def added(self, key: Key, tokens: int, written_since: float) -> None:
        """`tokens` written for `key` through this replica, in a write begun at `written_since` (this
        module's clock). A value read before then is raised by them; one read since, or being read,
        may include them already, and is read again instead."""
        entry = self._entries.get(key)
        if key in self._reading:
            self._written_while_read.add(key)
        if entry is None:
            return
        if entry.read_at < written_since:
            entry.spent = (entry.spent[0] + tokens, entry.spent[1] + tokens)
        else:
            del self._entries[key]

    def clock(self) -> float:
        return self._clock()

    def _want(self, key: Key, waiter: asyncio.Future[Spent] | None = None) -> None:
        waiting = self._wanted.setdefault(key, [])
        if waiter is not None:
            waiting.append(waiter)
        if self._task is None:  # else the read in flight goes on to it
            self._schedule(urgent=waiter is not None)

    def _schedule(self, urgent: bool) -> None:
        loop = asyncio.get_running_loop()
        if urgent and not self._soon:
            self._soon = True
            loop.call_soon(self._start_read)
        elif not urgent and self._later is None:
            self._later = loop.call_later(GATHER_SECONDS, self._start_read)

    def _start_read(self) -> None:
        self._soon = False
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if self._task is None and self._wanted:
            self._task = asyncio.get_running_loop().create_task(self._read_wanted())

    async def _read_wanted(self) -> None:
        try:
            while self._wanted:
                batch = dict(list(self._wanted.items())[:MAX_READ])
                for key in batch:
                    del self._wanted[key]
                keys = list(batch)
                self._reading, self._written_while_read = set(keys), set()
                try:
                    values = await self._read(keys)
                except Exception as error:  # noqa: BLE001 - goes to whoever waits; a refresh is tried again later
                    self._say_failing(error)
                    for waiting in batch.values():
                        for future in waiting:
                            if not future.done():
                                future.set_exception(error)
                    continue
                if self._failing:
                    self._failing = False
                    log.info("tokens spent are read again")
                read_at = self._clock()
                for key, spent in zip(keys, values):
                    if key not in self._written_while_read:
                        self._keep(key, _Entry(spent, read_at))
                    for future in batch[key]:
                        if not future.done():
                            future.set_result(spent)
                if not any(self._wanted.values()):  # refreshes alone: let more gather first
                    break
        finally:
            self._reading, self._written_while_read = set(), set()
            self._task = None
            if self._wanted:
                self._schedule(urgent=any(self._wanted.values()))

    def _say_failing(self, error: Exception) -> None:
        """Once per run of failed reads: budgets are checked against values read before it, for up to
        `stale_for`, after which those users' generations fail until a read succeeds."""
        if not self._failing:
            self._failing = True
            log.warning("tokens spent could not be read (%s); budgets are checked against the values kept, "
                        "for up to %g s past their %g s", error, self._stale_for, self._ttl)

    def _keep(self, key: Key, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


def _retrieved(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
