"""The usage ledger: every generation's record, written in batches off the generation's path.

A generation hands its record over and is done; a background task writes what has gathered every
FLUSH_SECONDS (or at once past BATCH_ROWS) in one transaction, so a reply never waits on the
database and hundreds of generations at once cost a few inserts. A read of usage through this
replica writes what it holds first; the unit's stop writes the rest. A replica killed outright
loses at most the last FLUSH_SECONDS of records.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.llm_unit import service

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.2
BATCH_ROWS = 500
# Records kept while the database cannot be written, beyond which the oldest are dropped (and logged).
MAX_PENDING = 100_000


class UsageLedger:
    accounting = True  # records are kept (NoUsage: they are not)

    def __init__(self, write: Callable[[list[service.Usage]], Awaitable[None]]) -> None:
        """`write` stores a batch in one transaction (in a database thread)."""
        self._write = write
        self._pending: list[service.Usage] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-ledger")

    def record(self, usage: service.Usage) -> None:
        self._pending.append(usage)
        if len(self._pending) > MAX_PENDING:
            del self._pending[:len(self._pending) - MAX_PENDING]
            log.error("usage records could not be written; the oldest were dropped")
        if len(self._pending) >= BATCH_ROWS:
            self._wake.set()

    async def flush(self) -> None:
        """Writes every record handed over so far."""
        async with self._lock:
            while self._pending:
                batch, self._pending = self._pending[:BATCH_ROWS], self._pending[BATCH_ROWS:]
                try:
                    await self._write(batch)
                except BaseException:
                    self._pending[:0] = batch  # kept for the next flush
                    raise

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("usage records could not be written at stop: %d lost", len(self._pending))

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(FLUSH_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.warning("usage records could not be written yet; kept for the next try", exc_info=True)


class NoUsage:
    """The ledger when usage accounting is off (LLMCHATLINKER_LLM_UNIT_USAGE_ACCOUNTING=false):
    records are dropped as they are handed over, and nothing is ever written."""

    accounting = False

    def start(self) -> None:
        pass

    def record(self, usage: service.Usage) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        pass
