"""3 (and 6): 200 concurrent streams of 50 tokens 20 ms apart: per-token lateness and relay CPU."""

from __future__ import annotations

from bench import floors, models, proc
from bench.context import DIRECT, LITELLM, US, Bench
from bench.report import Figure
from bench.stats import percentile

STREAMS = 200
# Issue 16's targets: added lateness p99 in ms, the suite's CPU-s per 1,000 relayed tokens (all in).
LATENESS_P99_TARGET_MS = 120
CPU_PER_1000_TARGET = 0.15


def _pids(bench: Bench, path: str) -> dict[str, int]:
    """The processes that relay on this path (none for the provider direct)."""
    if path == US:
        return bench.service_pids()
    if path == LITELLM and bench.peer:
        return {f"litellm {pid}": pid for pid in proc.descendants(bench.peer.process.pid)}
    return {}


async def _measured_burst(bench: Bench, path: str, model: str) -> tuple[float, list, dict[str, float]]:
    watch = proc.CpuWatch(_pids(bench, path))
    watch.start()
    wall, timelines = await bench.burst(path, model, STREAMS)
    return wall, timelines, watch.stop()


async def run(bench: Bench) -> list[Figure]:
    latency_s, interval_s = 0.0, models.RELAY_INTERVAL_MS / 1000
    for path in bench.paths:
        await bench.burst(path, models.RELAY, 8)
    lateness: dict[str, list[float]] = {}
    cpu: dict[str, float] = {}
    fixed_cpu: dict[str, float] = {}
    tokens: dict[str, int] = {}
    fixed_tokens: dict[str, int] = {}
    short: dict[str, int] = {}
    split: dict[str, float] = {}
    for path in bench.paths:
        # A stream's fixed cost (ledger, history, storing the turn) is paid once per stream: the
        # same burst with 3-token replies measures it, so the per-token relay cost stands apart.
        _, few, base = await _measured_burst(bench, path, models.FAST)
        fixed_cpu[path], fixed_tokens[path] = sum(base.values()), sum(len(t.token_times) for t in few)
        wall, timelines, used = await _measured_burst(bench, path, models.RELAY)
        cpu[path] = sum(used.values())
        if path == US:
            split = used
        tokens[path] = sum(len(t.token_times) for t in timelines)
        short[path] = sum(len(t.token_times) < models.RELAY_TOKENS for t in timelines)
        lateness[path] = [late for t in timelines for late in t.lateness(latency_s, interval_s)]
        bench.progress(f"{path}: {STREAMS} streams in {wall:.2f} s, {tokens[path]} tokens, "
                       f"relay CPU {cpu[path]:.2f} s (3-token streams: {fixed_cpu[path]:.2f} s)")
    p99 = {path: percentile(v, 99) * 1000 for path, v in lateness.items()}
    p50 = {path: percentile(v, 50) * 1000 for path, v in lateness.items()}
    per_1000 = {path: cpu[path] / tokens[path] * 1000 if tokens[path] else None for path in bench.paths}
    marginal = {path: (cpu[path] - fixed_cpu[path]) / (tokens[path] - fixed_tokens[path]) * 1000
                if tokens[path] > fixed_tokens[path] else None for path in bench.paths}
    bench.details["relay"] = {"lateness_ms": {"p50": p50, "p99": p99}, "cpu_s": cpu, "tokens": tokens,
                              "fixed_cpu_s_3_token_streams": fixed_cpu, "short_streams": short,
                              "suite_cpu_s_by_service": split}
    bench.notes.append("relay: suite CPU-s for 200x50 tokens by service: "
                       + ", ".join(f"{name} {seconds:.2f}" for name, seconds in split.items()))
    short_note = f"; {short[US]} streams short" if short[US] else ""
    return [
        Figure("3", f"token lateness p50, {STREAMS}x{models.RELAY_TOKENS} tokens", "ms", p50[US] - p50[DIRECT],
               p50[DIRECT], p50[LITELLM] - p50[DIRECT] if LITELLM in p50 else None,
               note="added; direct column: its raw lateness"),
        Figure("3", f"token lateness p99, {STREAMS}x{models.RELAY_TOKENS} tokens", "ms", p99[US] - p99[DIRECT],
               p99[DIRECT], p99[LITELLM] - p99[DIRECT] if LITELLM in p99 else None,
               floors.relay_added_token_ms(), target=f"<= {LATENESS_P99_TARGET_MS} ms",
               met=p99[US] - p99[DIRECT] <= LATENESS_P99_TARGET_MS, note="added; direct column: its raw lateness"),
        Figure("3", "CPU per 1,000 relayed tokens, all in", "CPU-s", per_1000[US], None, per_1000.get(LITELLM),
               floors.relay_cpu_per_1000(), target=f"<= {CPU_PER_1000_TARGET} CPU-s",
               met=per_1000[US] is not None and per_1000[US] <= CPU_PER_1000_TARGET,
               note="whole streams, 5 suite processes" + short_note),
        Figure("3", "CPU per 1,000 tokens, per-stream cost removed", "CPU-s", marginal[US], None,
               marginal.get(LITELLM), floors.relay_cpu_per_1000(),
               note="minus the same burst with 3-token replies"),
    ]
