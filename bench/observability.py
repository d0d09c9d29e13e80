"""`python -m bench.observability`: what metrics and tracing cost, on versus off, in one run.

Two suites side by side on the same stand-in LLM: one with every service's metrics port set and
traces sent to a local OTLP collector (which counts and drops them), one with both unset. The
same three loads run on each, alternating suites within each round so that the shared machine's
drift falls on both: instructions per second (USER_GET through Submit, 8 clients), time to first
token (one generation at a time), and the suite's CPU per 1,000 relayed tokens (200 streams of 50
tokens). A Prometheus scrape of every service runs every second during the loads, as a
collector's would (every 15 s) only more often.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import urllib.request
from pathlib import Path

from bench.sides import Side, change_pct, median, order_of_round, save, started
from bench.stats import percentile
from bench.suite import REPO, SERVICES, Suite, SuiteOptions, free_port, http_answers, spawn, wait_until

RESULTS = REPO / "bench" / "results"
STREAMS = 200


class Scraper:
    """Reads every service's /metrics once a second in a thread, as Prometheus would (more often)."""

    def __init__(self, ports: list[int]) -> None:
        self._ports, self._stop, self.scrapes = ports, threading.Event(), 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for port in self._ports:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                                          timeout=2) as answer:
                    answer.read()
                    self.scrapes += 1

    def __enter__(self) -> "Scraper":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


async def run(args: argparse.Namespace) -> dict:
    log_dir = RESULTS / "logs" / "observability"
    for side in ("off", args.on):
        (log_dir / side).mkdir(parents=True, exist_ok=True)
    receiver_port = free_port()
    receiver = spawn("otlp_collector", [sys.executable, "-m", "testkit.otlp", "--port", str(receiver_port)], {},
                     receiver_port, log_dir)
    await wait_until(receiver, lambda: http_answers(f"http://127.0.0.1:{receiver_port}/"))
    endpoint = f"http://127.0.0.1:{receiver_port}"
    metrics_ports = {service: free_port() for service in SERVICES}
    on_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
              **{f"LLMCHATLINKER_{s.upper()}_METRICS_PORT": str(p) for s, p in metrics_ports.items()}}
    tracing_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    if args.sample < 1:
        on_env |= {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(args.sample)}
        tracing_env |= {name: on_env[name] for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")}
    metrics_env = {k: v for k, v in on_env.items() if k not in tracing_env}
    envs = {"off": {}, "on": on_env, "metrics": metrics_env, "tracing": tracing_env}
    sides = [Side(name, Suite(SuiteOptions(env=envs[name]), log_dir / name)) for name in ("off", args.on)]
    try:
        async with started(sides, log_dir, STREAMS):
            for side in sides:
                for _ in range(3):  # warm: connections, caches
                    await side.ttft(5)
                    await side.throughput(0.5)
                side.forget()
            seconds, samples = (1.5, 20) if args.quick else (3.0, 60)
            with Scraper(list(metrics_ports.values())) as scraper:
                for round_ in range(args.rounds):
                    order = order_of_round(sides, round_)
                    for side in order:
                        await side.throughput(seconds)
                    for side in order:
                        await side.ttft(samples)
                    for side in order:
                        await side.relay(STREAMS)
                    print(f"  round {round_ + 1}/{args.rounds}: " + "; ".join(
                        f"{s.name}: {s.rates[-1]:.0f} instr/s, TTFT p50 {median(s.ttfts) * 1000:.1f} ms, "
                        f"{s.cpu_per_1000[-1] if s.cpu_per_1000 else float('nan'):.2f} CPU s/1000 tokens"
                        for s in sides), flush=True)
    finally:
        receiver.stop()
    exports = receiver.log_tail(1).partition(": ")[2]
    off, on = sides
    figures = {
        "instructions_per_second": (median(off.rates), median(on.rates)),
        "ttft_p50_ms": (median(off.ttfts) * 1000, median(on.ttfts) * 1000),
        "ttft_p99_ms": (percentile(off.ttfts, 99) * 1000, percentile(on.ttfts, 99) * 1000),
        "cpu_s_per_1000_relayed_tokens": (median(off.cpu_per_1000), median(on.cpu_per_1000)),
    }
    return {"figures": {name: {"off": a, "on": b, "change_pct": change_pct(a, b)}
                        for name, (a, b) in figures.items()},
            "rounds": args.rounds, "on": args.on, "trace_sample_ratio": args.sample, "trace_exports_received": exports, "scrapes": scraper.scrapes,
            "errors": {side.name: side.errors for side in sides},
            "samples": {side.name: {"rates": side.rates, "cpu_per_1000": side.cpu_per_1000,
                                    "ttft_count": len(side.ttfts)} for side in sides}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.observability", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--on", choices=("on", "metrics", "tracing"), default="on",
                        help="what the second suite turns on: both (default), metrics alone, or tracing alone")
    parser.add_argument("--sample", type=float, default=1.0, metavar="RATIO",
                        help="the share of traces kept (OTEL_TRACES_SAMPLER=parentbased_traceidratio); default 1: all")
    parser.add_argument("--quick", action="store_true", help="shorter loads: a smoke run, noisier")
    parser.add_argument("--json", type=Path, default=RESULTS / "observability.json")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(f"\n{'figure':<34} {'off':>10} {'on':>10} {'change':>8}")
    for name, figure in report["figures"].items():
        change = f"{figure['change_pct']:+.1f} %" if figure["change_pct"] is not None else "-"
        print(f"{name:<34} {figure['off']:>10.2f} {figure['on']:>10.2f} {change:>8}")
    print(f"trace exports received by the collector: {report['trace_exports_received']}; scrapes: {report['scrapes']:,}; "
          f"errors: {report['errors']}")
    save(report, args.json)


if __name__ == "__main__":
    main()
