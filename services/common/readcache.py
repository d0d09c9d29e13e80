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
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: collections.OrderedDict[str, tuple[float, Value]] = collections.OrderedDict()
        self._loads: dict[str, asyncio.Task[Value]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[Value]]) -> Value:
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry[0]:
            return entry[1]
        flight = self._loads.get(key)
        if flight is None:
            flight = self._loads[key] = asyncio.ensure_future(self._load(key, load))
            flight.add_done_callback(_retrieved)
        # Shielded: one caller giving up must not cancel the load the others wait for.
        return await asyncio.shield(flight)

    def clear(self) -> None:
        self._entries.clear()
        self._loads.clear()

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
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return value


def _retrieved(flight: asyncio.Future) -> None:
    if not flight.cancelled():
        flight.exception()  # marked as seen: every caller of a failed load may have gone
