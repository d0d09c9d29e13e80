"""Per-key ordering: work on one key (a chat) runs in submission order, different keys overlap."""

from __future__ import annotations

import asyncio


class Chains:
    """Each key's work waits for the key's previous work to end; work without a key runs at once."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task] = {}

    def run(self, key: str, work) -> asyncio.Task:
        previous = self._tails.get(key) if key else None

        async def after_previous():
            if previous is not None:
                await asyncio.wait({previous})
            return await work()

        task = asyncio.create_task(after_previous())
        if key:
            self._tails[key] = task
            task.add_done_callback(lambda done: self._tails.pop(key) if self._tails.get(key) is done else None)
        return task
