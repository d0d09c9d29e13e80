"""`python -m bench`: start the stand-in LLM, the suite and LiteLLM, run the scenarios, print and save."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import traceback
from pathlib import Path

from bench import calibrate, litellm_peer, report, scenarios
from bench.context import Bench
from bench.openai_client import OpenAiStreamer
from bench.profiling import Profiler
from bench.report import Figure
from bench.submit_client import SubmitClient, channel
from bench.suite import REPO, Suite, SuiteOptions, delete_queues, start_llm_server
from bench.world import World

RESULTS = REPO / "bench" / "results"
MAX_STREAMS = 256  # scenario 1's largest N
# The 10,000 vs 100,000 takes ~25 minutes at the suite's present rate: --long-memory.
DEFAULT_MEMORY_COUNTS = (2_000, 8_000)
LONG_MEMORY_COUNTS = (10_000, 100_000)


def _counts(text: str) -> tuple[int, int]:
    first, second = (int(part.replace("_", "")) for part in text.split(","))
    if not 0 < first < second:
        raise argparse.ArgumentTypeError("want FIRST,SECOND with 0 < FIRST < SECOND")
    return first, second


def _scenario_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in scenarios.ALL]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenarios {unknown}; known: {', '.join(scenarios.ALL)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scenarios", type=_scenario_list, default=list(scenarios.ALL),
                        help=f"comma-separated, from: {', '.join(scenarios.ALL)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer samples and rounds: a smoke run, noisier")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write the figures")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer (scenario 6)")
    parser.add_argument("--amqp", action="store_true",
                        help="run the suite on RabbitMQ (and measure the legacy AMQP path) instead of "
                             "the in-process queue")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--postgres", action="store_true", help="units on PostgreSQL instead of SQLite files")
    parser.add_argument("--postgres-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    parser.add_argument("--memory-counts", type=_counts, default=DEFAULT_MEMORY_COUNTS, metavar="FIRST,SECOND",
                        help="instructions before the two RSS readings (default %(default)s)")
    parser.add_argument("--long-memory", action="store_true",
                        help=f"memory flatness at {LONG_MEMORY_COUNTS[0]:,} vs {LONG_MEMORY_COUNTS[1]:,} "
                             "instructions (several minutes more)")
    parser.add_argument("--profile", type=_scenario_list, default=[], metavar="SCENARIOS",
                        help="record each suite process with py-spy during these scenarios "
                             "(installed into bench/.tools-venv on first use)")
    parser.add_argument("--profile-tool", choices=("py-spy", "perf"), default="py-spy",
                        help="py-spy: Python functions (GIL-held); perf: all CPU by library and symbol")
    parser.add_argument("--max-in-flight", type=int, help="LLMCHATLINKER_MAX_IN_FLIGHT for the orchestrator")
    args = parser.parse_args(argv)
    if args.long_memory:
        args.memory_counts = LONG_MEMORY_COUNTS
    return args


async def _setup(args: argparse.Namespace, stack: contextlib.AsyncExitStack, log_dir: Path) -> Bench:
    print("starting the stand-in LLM and the suite", flush=True)
    provider = await start_llm_server(log_dir)
    stack.callback(provider.stop)
    queue = f"bench_instructions_{os.getpid()}" if args.amqp else None
    suite = Suite(SuiteOptions(amqp_url=args.amqp_url if args.amqp else None,
                               postgres_url=args.postgres_url if args.postgres else None,
                               queue=queue, max_in_flight=args.max_in_flight), log_dir)
    stack.callback(suite.stop)
    if queue:
        stack.callback(delete_queues, args.amqp_url, [queue, queue + ".dead"])
    await suite.start()
    print(f"  suite up: {', '.join(f'{n} pid {p.pid} :{p.port}' for n, p in suite.processes.items())}", flush=True)
    grpc_channel = channel(suite.orchestrator)
    stack.push_async_callback(grpc_channel.close)
    client = SubmitClient(grpc_channel)
    direct = await stack.enter_async_context(OpenAiStreamer(f"http://127.0.0.1:{provider.port}/v1/chat/completions"))
    world = await World.build(client, f"http://127.0.0.1:{provider.port}/v1/chat/completions")
    # One chat per simultaneous stream, made before any scenario so no profile counts their making.
    print(f"  creating {MAX_STREAMS} chats", flush=True)
    await world.ensure_chats(client, MAX_STREAMS)
    bench = Bench(args, suite, provider, client, direct, world, log_dir)
    if not args.no_litellm:
        print(f"starting LiteLLM {litellm_peer.version()} (its own venv, bench/.litellm-venv)", flush=True)
        bench.peer = await litellm_peer.start(bench.provider_url, log_dir)
        stack.callback(bench.peer.process.stop)
        bench.litellm = await stack.enter_async_context(OpenAiStreamer(bench.peer.chat_url, bench.peer.master_key))
    return bench


async def _calibrate(log_dir: Path, when: str) -> list[dict]:
    """Bare gRPC round trips against their floor: how much the shared machine slows everything now."""
    results = []
    for kind in calibrate.KINDS:
        result = await calibrate.grpc_round_trip(log_dir, kind)
        print(f"calibration at {when}: bare unary call to a {kind} server: p50 {result['p50_ms']:.2f} ms "
              f"({result['vs_floor_p50']:.1f}x floor), p99 {result['p99_ms']:.2f} ms "
              f"({result['vs_floor_p99']:.1f}x floor), server CPU {result['server_cpu_ms_per_call']:.2f} ms/call",
              flush=True)
        results.append(result)
    return results


async def _run(args: argparse.Namespace) -> int:
    started = time.time()
    log_dir = RESULTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    machine = report.machine()
    print(f"machine: {machine['nproc']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
          f"Python {machine['python']}, load average {' '.join(machine['loadavg_at_start'])}", flush=True)
    machine["calibration_at_start"] = await _calibrate(log_dir, "start")
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        bench = await _setup(args, stack, log_dir)
        profiler = Profiler(RESULTS / "profiles", bench.service_pids(), args.profile_tool) if args.profile else None
        for index, name in enumerate(args.scenarios, 1):
            print(f"[{index}/{len(args.scenarios)}] {name}: {scenarios.ALL[name].__doc__.strip()}", flush=True)
            recording = profiler.recording(name) if profiler and name in args.profile else contextlib.nullcontext()
            try:
                with recording:
                    figures += await scenarios.ALL[name].run(bench)
                bench.suite.check_alive()
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
                failures[name] = "".join(traceback.format_exception(exc))
                print(f"  {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
                bench.suite.check_alive()
        if "memory" not in args.scenarios:
            figures += scenarios.memory.peak_figures(bench)
        for label, streamer in (("provider direct", bench.direct), ("LiteLLM", bench.litellm)):
            if streamer is not None and streamer.retries:
                bench.notes.append(f"{label}: {streamer.retries} requests sent again after meeting a closed "
                                   "keep-alive connection (their time includes the retry)")
        notes = bench.notes + [f"{name} failed: {text.splitlines()[-1]}" for name, text in failures.items()]
        if args.quick:
            notes.insert(0, "--quick: fewer samples and rounds, memory flatness at smaller counts; a smoke run")
        with open("/proc/loadavg") as handle:
            machine["loadavg_at_end"] = handle.read().split()[:3]
        extra = {"command": " ".join(["python -m bench", *sys.argv[1:]]), "machine": machine,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                 "duration_s": round(time.time() - started, 1), "litellm_version": litellm_peer.version(),
                 "suite": {"queue": "RabbitMQ" if args.amqp else "in-process",
                           "database": "PostgreSQL" if args.postgres else "SQLite"},
                 "notes": notes, "failures": failures, "details": bench.details}
    machine["calibration_at_end"] = await _calibrate(log_dir, "end")
    print("\n" + report.text_table(figures))
    for note in notes:
        print(f"note: {note}")
    report.write_json(args.json, figures, extra)
    args.json.with_suffix(".md").write_text(report.markdown_table(figures) + "\n")
    print(f"\nwrote {args.json} and {args.json.with_suffix('.md')} ({time.time() - started:.0f} s)")
    return 1 if failures else 0


def main() -> None:
    sys.exit(asyncio.run(_run(parse_args())))


if __name__ == "__main__":
    main()
