"""4: USER_CREATE and USER_GET through Submit and the legacy AMQP path, 1/8/64 clients."""

from __future__ import annotations

import os

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

from bench import floors
from bench.context import Bench
from bench.load import KINDS, LoadResult, legacy_instruction, legacy_load, submit_instruction, submit_load
from bench.report import Figure
from bench.stats import percentile
from bench.world import unique_name

LEVELS = (1, 8, 64)
USERS_TO_GET = 16
# Issue 16's targets, by (kind, path, clients): instructions/s at least, p50 ms at most.
RATE_TARGETS = {("USER_GET", "submit", 8): 1500}
P50_TARGETS_MS = {("USER_GET", "submit", 8): 6.0}


def _figures(path: str, kind: str, n: int, result: LoadResult) -> list[Figure]:
    label = "Submit" if path == "submit" else "legacy AMQP"
    p50, p99 = (percentile(result.latencies, q) * 1000 for q in (50, 99))
    cpu_ms = sum(v for k, v in result.cpu_s.items() if k != "bench client") / max(len(result.latencies), 1) * 1000
    note = f"p50 {p50:.1f} / p99 {p99:.1f} ms; suite CPU {cpu_ms:.2f} ms/instr"
    if result.errors:
        note += f"; {result.errors} errors: {result.first_error}"
    if path == "amqp" and n > 1:
        rate_floor = floors.broker_instruction_rate()
    else:
        rate_floor = floors.closed_loop_rate(n, floors.instruction_latency(path, kind, "p50"))
    clients = "1 client" if n == 1 else f"{n} clients"
    rate_target, p50_target = RATE_TARGETS.get((kind, path, n)), P50_TARGETS_MS.get((kind, path, n))
    figures = [Figure("4", f"{kind} via {label}, {clients}", "instr/s", result.rate, floor=rate_floor,
                      higher_better=True, note=note, target=f">= {rate_target:,}" if rate_target else "",
                      met=result.rate >= rate_target if rate_target else None)]
    if n == 1:
        figures += [Figure("4", f"{kind} via {label}, 1 client, {q}", "ms", value,
                           floor=floors.instruction_latency(path, kind, q))
                    for q, value in (("p50", p50), ("p99", p99))]
    elif p50_target:
        figures.append(Figure("4", f"{kind} via {label}, {clients}, p50", "ms", p50,
                              floor=floors.instruction_latency(path, kind, "p50"), target=f"<= {p50_target:g} ms",
                              met=p50 <= p50_target))
    return figures


async def run(bench: Bench) -> list[Figure]:
    seconds = 1.5 if bench.quick else 3.0
    users = [await bench.client.run(user_create=pb.UserCreate(username=unique_name("get")))
             for _ in range(USERS_TO_GET)]
    user_ids = [u.user.user_id for u in users]
    pids = {**bench.service_pids(), "bench client": os.getpid()}
    paths = ["submit"] + (["amqp"] if bench.args.amqp else [])
    if not bench.args.amqp:
        bench.notes.append("throughput: legacy AMQP path not measured (needs --amqp: the in-process queue "
                           "has no broker for a legacy client to publish to)")
    figures, detail = [], {}
    for kind in KINDS:
        for n in LEVELS:
            for path in paths:
                if path == "submit":
                    result = await submit_load(bench.suite.orchestrator, submit_instruction(kind, user_ids), n,
                                               seconds, pids)
                else:
                    result = await legacy_load(bench.args.amqp_url, bench.suite.options.queue,
                                               legacy_instruction(kind, user_ids), n, seconds, pids)
                bench.progress(f"{kind} {path} {n} clients: {result.rate:,.0f} instr/s, "
                               f"p50 {percentile(result.latencies, 50) * 1000:.1f} ms, "
                               f"p99 {percentile(result.latencies, 99) * 1000:.1f} ms"
                               + (f", {result.errors} errors" if result.errors else ""))
                detail[f"{kind}/{path}/{n}"] = {
                    "rate": result.rate, "count": len(result.latencies), "errors": result.errors,
                    "first_error": result.first_error,
                    "p50_ms": percentile(result.latencies, 50) * 1000,
                    "p99_ms": percentile(result.latencies, 99) * 1000,
                    "cpu_ms_per_instr": {k: v / max(len(result.latencies), 1) * 1000 for k, v in result.cpu_s.items()},
                    "cpu_utilisation": {k: v / result.seconds for k, v in result.cpu_s.items()}}
                figures += _figures(path, kind, n, result)
    bench.details["throughput"] = detail
    for key, values in detail.items():
        if key.endswith(f"/{LEVELS[-1]}"):
            split = ", ".join(f"{name} {ms:.2f}" for name, ms in values["cpu_ms_per_instr"].items() if ms >= 0.05)
            bench.notes.append(f"throughput {key}: CPU ms per instruction: {split}")
    return figures
