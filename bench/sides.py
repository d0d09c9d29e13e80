"""Suites side by side on one stand-in LLM, for what a setting costs measured in one run.

Each side is a whole suite of its own (its own processes, data and world); the modules that use
this (bench.observability, bench.resilience) start them with different settings and alternate the
same loads between them round by round, so the shared machine's drift falls on every side alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

from bench import models, proc
from bench.load import submit_instruction, submit_load
from bench.stats import percentile
from bench.submit_client import SubmitClient, channel
from bench.suite import Process, Suite, start_llm_server
from bench.world import World

CLIENTS = 8
USERS_TO_GET = 16


class Side:
    """One suite and the loads run on it; each load appends its figure to the side's lists."""

    def __init__(self, name: str, suite: Suite) -> None:
        self.name, self.suite = name, suite
        self.rates: list[float] = []
        self.ttfts: list[float] = []
        self.cpu_per_1000: list[float] = []
        self.walls: dict[int, list[float]] = {}
        self.cpu_ms_per_generation: dict[int, list[float]] = {}
        self.errors = 0

    async def prepare(self, provider_url: str, streams: int,
                      configure: Callable[[SubmitClient, World], Awaitable[None]] | None = None) -> None:
        """The world (with `streams` chats, each with a speaker of its own), users to read, and
        whatever `configure` sets on the world's provider and models."""
        self.channel = channel(self.suite.orchestrator)
        self.client = SubmitClient(self.channel)
        self.world = await World.build(self.client, provider_url)
        if configure is not None:
            await configure(self.client, self.world)
        await self.world.ensure_chats(self.client, streams)
        users = [await self.client.run(user_create=pb.UserCreate(username=f"side{i}{time.time_ns()}"))
                 for i in range(USERS_TO_GET)]
        self.user_ids = [u.user.user_id for u in users]

    def forget(self) -> None:
        """Drops the figures taken so far (the warm-up's)."""
        self.rates, self.ttfts, self.cpu_per_1000, self.walls, self.cpu_ms_per_generation = [], [], [], {}, {}

    async def throughput(self, seconds: float) -> None:
        """USER_GET through Submit, CLIENTS closed-loop clients."""
        result = await submit_load(self.suite.orchestrator, submit_instruction("USER_GET", self.user_ids), CLIENTS,
                                   seconds, self.suite.pids())
        self.rates.append(result.rate)
        self.errors += result.errors

    async def ttft(self, samples: int = 1) -> None:
        """Generations one at a time on one chat, answered at once: their time to first token."""
        chat = self.world.chats[0]
        for _ in range(samples):
            timeline = await self.client.generate(self.world.speakers[chat], chat, self.world.llm_ids[models.FAST],
                                                  "hello")
            if timeline.ttft is None:
                self.errors += 1
            else:
                self.ttfts.append(timeline.ttft)

    async def burst(self, n: int, model: str = models.SLOW) -> None:
        """n generations at once, each on its own chat: wall time from the first start to the last
        end, and the suite's CPU per generation."""
        chats = self.world.chats[:n]
        watch = proc.CpuWatch(self.suite.pids())
        watch.start()
        started = time.perf_counter()
        timelines = await asyncio.gather(*(self.client.generate(self.world.speakers[c], c, self.world.llm_ids[model],
                                                                "hello") for c in chats))
        self.walls.setdefault(n, []).append(time.perf_counter() - started)
        self.cpu_ms_per_generation.setdefault(n, []).append(sum(watch.stop().values()) / n * 1000)
        self.errors += sum(not t.ok for t in timelines)

    async def relay(self, streams: int) -> None:
        """`streams` streams of 50 tokens 20 ms apart: the suite's CPU per 1,000 relayed tokens."""
        chats = self.world.chats[:streams]
        watch = proc.CpuWatch(self.suite.pids())
        watch.start()
        timelines = await asyncio.gather(*(self.client.generate(self.world.speakers[c], c,
                                                                self.world.llm_ids[models.RELAY], "hello")
                                           for c in chats))
        cpu = sum(watch.stop().values())
        tokens = sum(len(t.token_times) for t in timelines)
        self.errors += sum(not t.ok for t in timelines)
        if tokens:
            self.cpu_per_1000.append(cpu / tokens * 1000)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.channel.close()
        self.suite.stop()


def order_of_round(sides: list[Side], round_: int) -> list[Side]:
    """The order the sides run in, in a round: every order in turn, so that over len(sides)! rounds
    each side runs first, and right after each other side, equally often. A burst's tail (a usage
    ledger's flush, the database's own writes) runs into the start of the next side's; turning one
    fixed order only would always put the same side after the same other one."""
    orders = list(itertools.permutations(sides))
    return list(orders[round_ % len(orders)])


def save(report: dict, path: Path) -> None:
    """Writes a comparison's figures as JSON and says where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


def median(values: list[float]) -> float:
    return percentile(values, 50) if values else float("nan")


def change_pct(before: float, after: float) -> float | None:
    return (after - before) / before * 100 if before else None


@contextlib.asynccontextmanager
async def started(sides: list[Side], log_dir, streams: int,
                  configure: dict[str, Callable[[SubmitClient, World], Awaitable[None]]] | None = None):
    """The stand-in LLM and every side's suite, prepared; all stopped on leaving."""
    provider: Process = await start_llm_server(log_dir)
    try:
        for side in sides:
            await side.suite.start()
            await side.prepare(f"http://127.0.0.1:{provider.port}/v1/chat/completions", streams,
                               (configure or {}).get(side.name))
        yield provider
    finally:
        for side in sides:
            await side.close()
        provider.stop()
