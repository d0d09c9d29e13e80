"""Closed-loop instruction load: N clients on persistent connections, each sending as fast as answered."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

from bench.proc import CpuWatch
from bench.legacy_client import LegacyClient
from bench.submit_client import SubmitClient, channel

KINDS = ("USER_CREATE", "USER_GET")


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    cpu_s: dict[str, float] = field(default_factory=dict)   # per process, during the load

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def _username() -> str:
    return f"u{uuid.uuid4().hex[:20]}"


def submit_instruction(kind: str, user_ids: list[str]) -> Callable[[int], dict]:
    """Keyword arguments of SubmitClient.run for the i-th instruction of a kind."""
    if kind == "USER_CREATE":
        return lambda i: {"user_create": pb.UserCreate(username=_username())}
    return lambda i: {"user_get": pb.UserGet(user_id=user_ids[i % len(user_ids)])}


def legacy_instruction(kind: str, user_ids: list[str]) -> Callable[[int], tuple[str, dict]]:
    if kind == "USER_CREATE":
        return lambda i: ("USER_CREATE", {"username": _username(), "display_name": None, "profile": None})
    return lambda i: ("USER_GET", {"user_id": user_ids[i % len(user_ids)]})


async def submit_load(address: str, make: Callable[[int], dict], clients: int, seconds: float,
                      pids: dict[str, int]) -> LoadResult:
    channels = [channel(address, own_connection=True) for _ in range(clients)]
    submitters = [SubmitClient(c) for c in channels]
    counter = itertools.count()
    # One round trip each first, so connection set-up is not timed.
    await asyncio.gather(*(s.run(**make(next(counter))) for s in submitters))
    result = LoadResult(seconds)
    watch = CpuWatch(pids)
    stop_at = time.perf_counter() + seconds

    async def client(submitter: SubmitClient) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await submitter.run(**make(next(counter)))
                result.latencies.append(time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - counted and shown, the load goes on
                result.errors += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"[:200]

    watch.start()
    began = time.perf_counter()
    await asyncio.gather(*(client(s) for s in submitters))
    result.seconds = time.perf_counter() - began
    result.cpu_s = watch.stop()
    await asyncio.gather(*(c.close() for c in channels))
    return result


def _legacy_load(amqp_url: str, queue: str, make: Callable[[int], tuple[str, dict]], clients: int,
                 seconds: float, pids: dict[str, int]) -> LoadResult:
    connections = [LegacyClient(amqp_url, queue) for _ in range(clients)]
    counter = itertools.count()
    lock = threading.Lock()
    result = LoadResult(seconds)
    for connection in connections:
        connection.call(*make(next(counter)))
    ready = threading.Barrier(clients + 1)
    stop_at: list[float] = []

    def client(connection: LegacyClient) -> None:
        ready.wait()
        while time.perf_counter() < stop_at[0]:
            with lock:
                i = next(counter)
            started = time.perf_counter()
            try:
                reply = connection.call(*make(i))
                ok = reply.get("status") == "success"
            except Exception as exc:  # noqa: BLE001
                ok, reply = False, {"message": f"{type(exc).__name__}: {exc}"}
            with lock:
                if ok:
                    result.latencies.append(time.perf_counter() - started)
                else:
                    result.errors += 1
                    result.first_error = result.first_error or str(reply.get("message"))[:200]

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in connections]
    for thread in threads:
        thread.start()
    watch = CpuWatch(pids)
    stop_at.append(time.perf_counter() + seconds)
    watch.start()
    began = time.perf_counter()
    ready.wait()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - began
    result.cpu_s = watch.stop()
    for connection in connections:
        connection.close()
    return result


async def legacy_load(amqp_url: str, queue: str, make, clients: int, seconds: float,
                      pids: dict[str, int]) -> LoadResult:
    return await asyncio.to_thread(_legacy_load, amqp_url, queue, make, clients, seconds, pids)
