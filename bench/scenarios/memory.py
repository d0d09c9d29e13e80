"""7: resident memory after N and after M instructions (flat?), and each service's peak after the run."""

from __future__ import annotations

import asyncio
import itertools
import time

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

from bench import models, proc
from bench.context import Bench
from bench.report import Figure
from bench.submit_client import SubmitClient, channel
from bench.world import unique_name

CLIENTS = 32
PEAK_TARGET_MIB = 120.0
FLAT_MIB = 4.0          # growth allowed for allocator noise...
FLAT_SHARE = 0.05       # ...or this share of the first reading, whichever is larger


def _mix(bench: Bench, user_ids: list[str], chat_id: str):
    """One instruction of a realistic mix per i: creates, gets, loads and a generation in ten."""
    llm_id = bench.world.llm_ids[models.SHORT]

    def make(i: int) -> dict:
        slot = i % 10
        if slot < 3:
            return {"user_create": pb.UserCreate(username=unique_name("m"))}
        if slot < 7:
            return {"user_get": pb.UserGet(user_id=user_ids[i % len(user_ids)])}
        if slot < 9:
            return {"chat_load": pb.ChatLoad(chat_id=chat_id, message_page_size=20)}
        return {"llm_response_generate": pb.LlmResponseGenerate(user_id=bench.world.user_id, chat_id=chat_id,
                                                                 llm_id=llm_id, user_input="memory?")}
    return make


async def _drive(bench: Bench, total: int, done_before: int) -> None:
    """Run instructions until `total` have been answered, CLIENTS at a time on their own connections."""
    chats = await bench.world.ensure_chats(bench.client, CLIENTS)
    users = [bench.world.user_id]
    channels = [channel(bench.suite.orchestrator, own_connection=True) for _ in range(CLIENTS)]
    done = [done_before]
    tickets = itertools.count(done_before)
    started = time.perf_counter()
    next_report = [done_before + 5000]

    async def client(index: int, submitter: SubmitClient) -> None:
        make = _mix(bench, users, chats[index])
        while next(tickets) < total:
            await submitter.run(**make(done[0]))
            done[0] += 1
            if done[0] >= next_report[0]:
                next_report[0] += 5000
                rate = (done[0] - done_before) / (time.perf_counter() - started)
                bench.progress(f"{done[0]:,}/{total:,} instructions ({rate:,.0f}/s)")

    await asyncio.gather(*(client(i, SubmitClient(c)) for i, c in enumerate(channels)))
    await asyncio.gather(*(c.close() for c in channels))


async def run(bench: Bench) -> list[Figure]:
    first, second = bench.args.memory_counts
    if bench.quick:
        first, second = min(first, 1000), min(second, 3000)
    await _drive(bench, first, 0)
    rss_first = {name: proc.rss_mib(pid) for name, pid in bench.service_pids().items()}
    await _drive(bench, second, first)
    rss_second = {name: proc.rss_mib(pid) for name, pid in bench.service_pids().items()}

    figures = []
    for name in bench.service_pids():
        growth = rss_second[name] - rss_first[name]
        allowed = max(FLAT_MIB, FLAT_SHARE * rss_first[name])
        figures.append(Figure("7", f"{name} RSS growth {first:,} -> {second:,} instr", "MiB", growth,
                              target=f"<= {allowed:.1f} MiB (flat)", met=growth <= allowed,
                              note=f"{rss_first[name]:.0f} -> {rss_second[name]:.0f} MiB"))
    bench.details["memory"] = {"counts": [first, second], "rss_mib": {"first": rss_first, "second": rss_second}}
    if (first, second) != (10_000, 100_000):
        bench.notes.append(f"memory: flatness measured between {first:,} and {second:,} instructions; the "
                           "issue's 10,000 vs 100,000 runs with --long-memory (15-25 minutes more)")
    return figures + peak_figures(bench)


def peak_figures(bench: Bench) -> list[Figure]:
    """VmHWM of each service now, beside LiteLLM's (its whole process tree)."""
    peaks = {name: proc.peak_rss_mib(pid) for name, pid in bench.service_pids().items()}
    litellm = proc.tree_peak_rss_mib(bench.peer.process.pid) if bench.peer else None
    bench.details["peak_rss_mib"] = {**peaks, "litellm": litellm,
                                     "testkit_llm (not ours)": proc.peak_rss_mib(bench.provider.pid)}
    figures = [Figure("7", f"{name} peak RSS after the run", "MiB", value, target=f"< {PEAK_TARGET_MIB:g} MiB",
                      met=value < PEAK_TARGET_MIB) for name, value in peaks.items()]
    figures.append(Figure("7", "peak RSS after the run, all 5 services", "MiB", sum(peaks.values()),
                          litellm=litellm, note="LiteLLM: its process tree, 1 worker" if litellm else ""))
    return figures
