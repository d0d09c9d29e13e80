"""A short-lived, bounded in-process cache with shared loads: the models (and providers) a
generation needs, kept briefly by the orchestrator and by llm_unit."""

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")

# Entries kept at most (one per model); past it the oldest goes. Far more models than a deployment serves.
MAX_ENTRIES = 1024


class ReadCache(Generic[Value]):
    """Values by key, each reused for `ttl` seconds; with a ttl of 0 (or less) nothing is kept.

    Concurrent misses of one key share one load (with any ttl). A load that fails is not kept, so the next
    call loads again. clear() forgets everything at once, loads in flight included: their
    callers still get what those loads read, but it is not kept, since it may predate the
    write that cleared the cache. Lives on one event loop; it is not thread-safe.
    """

    def __init__(self, ttl: float, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic, stale_for: float = 0.0) -> None:
        """`stale_for`: seconds past its ttl during which a kept value is still answered, while a load
        (started by the first get past the ttl) reads it afresh in the background."""
        self._ttl = ttl
        self._stale_for = stale_for
        self._max_entries = max_entries
        self._clock = clock
        # key -> (expires, value, when its load ended)
        self._entries: collections.OrderedDict[str, tuple[float, Value, float]] = collections.OrderedDict()
        self._loads: dict[str, asyncio.Task[Value]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[Value]]) -> Value:
        entry = self._entries.get(key)
        if entry is not None:
            expired_for = self._clock() - entry[0]
            if expired_for < 0:
                return entry[1]
            if expired_for < self._stale_for:
                self._flight(key, load)
                return entry[1]
        # Shielded: one caller giving up must not cancel the load the others wait for.
        return await asyncio.shield(self._flight(key, load))

    def _flight(self, key, load: Callable[[], Awaitable[Value]]) -> asyncio.Future[Value]:
        """The load of `key` in flight, started if there is none."""
        flight = self._loads.get(key)
        if flight is None:
            flight = self._loads[key] = asyncio.ensure_future(self._load(key, load))
            flight.add_done_callback(_retrieved)
        return flight

    def clear(self) -> None:
        self._entries.clear()
        self._loads.clear()

    def update(self, key, change: Callable[[Value], Value], written_since: float) -> None:
        """Applies a write made through this process, begun at `written_since` (this cache's clock),
        to the value kept for `key`: a value whose load ended before then gets `change`; one loaded
        since may have read the write already and is forgotten, as is a load still in flight."""
        if self._loads.pop(key, None) is not None:
            self._entries.pop(key, None)
            return
        entry = self._entries.get(key)
        if entry is None:
            return
        expires, value, loaded = entry
        if loaded < written_since:
            self._entries[key] = (expires, change(value), loaded)
        else:
            del self._entries[key]

    async def _load(self, key: str, load: Callable[[], Awaitable[Value]]) -> Value:
        flight = asyncio.current_task()
        # The entry's life runs from the start of the read: whatever was committed before
        # then (say, through another replica) is seen at most `ttl` seconds later.
        expires = self._clock() + self._ttl
        try:
            value = await load()
        finally:
            # Still registered means no clear() since the load began.
            current = self._loads.get(key) is flight
            if current:
                del self._loads[key]
        if current and self._ttl > 0:
            self._entries[key] = (expires, value, self._clock())
            self._entries.move_to_end(key)
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return value


def _retrieved(flight: asyncio.Future) -> None:
    if not flight.cancelled():
        flight.exception()  # marked as seen: every caller of a failed load may have gone
