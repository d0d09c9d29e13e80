"""What a scenario gets: the running processes, the clients on each path and the world's ids."""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import models
from bench.litellm_peer import Peer
from bench.openai_client import OpenAiStreamer
from bench.suite import Process, Suite
from bench.submit_client import SubmitClient
from bench.timeline import Timeline
from bench.world import World

# The three ways to the same stand-in model, in the order every comparison alternates them.
DIRECT, US, LITELLM = "direct", "us", "litellm"


@dataclass
class Bench:
    args: argparse.Namespace
    suite: Suite
    provider: Process
    client: SubmitClient
    direct: OpenAiStreamer
    world: World
    log_dir: Path
    peer: Peer | None = None
    litellm: OpenAiStreamer | None = None
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic)

    @property
    def quick(self) -> bool:
        return self.args.quick

    @property
    def paths(self) -> list[str]:
        return [DIRECT, US] + ([LITELLM] if self.litellm else [])

    @property
    def provider_url(self) -> str:
        return f"http://127.0.0.1:{self.provider.port}"

    def progress(self, text: str) -> None:
        print(f"  [{time.monotonic() - self._started:6.1f} s] {text}", flush=True)

    async def stream(self, path: str, model: str, chat_id: str, prompt: str = "hello") -> Timeline:
        """One streamed generation of `model` on the named path."""
        if path == DIRECT:
            return await self.direct.stream(model, prompt)
        if path == LITELLM:
            assert self.litellm is not None
            return await self.litellm.stream(models.alias(model), prompt)
        return await self.client.generate(self.world.speakers[chat_id], chat_id, self.world.llm_ids[model], prompt)

    async def burst(self, path: str, model: str, n: int) -> tuple[float, list[Timeline]]:
        """n simultaneous streams on one path: wall time from the first start to the last end."""
        chats = await self.world.ensure_chats(self.client, n)
        started = time.perf_counter()
        timelines = await asyncio.gather(*(self.stream(path, model, chats[i]) for i in range(n)))
        return time.perf_counter() - started, list(timelines)

    def service_pids(self) -> dict[str, int]:
        return self.suite.pids()
