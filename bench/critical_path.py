"""`python -m bench.critical_path`: where one instruction's time goes, step by step, from its spans.

A suite sends every span to the test kit's OTLP receiver; instructions run one at a time (a
generation: the stand-in LLM answering at once), and for each step (a service and span name) this
prints when it began after the Submit call arrived and how long it took, as medians over the
instructions, beside what the client saw (a generation's time to first token, else its latency). Tracing adds its own cost to every step (some 30 µs a
span), so read the shape (which steps are sequential, where the gaps are), not the totals.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

from bench.resilience import LIMITS
from bench.sides import Side, median, started
from bench.suite import REPO, Suite, SuiteOptions
from bench.world import unique_name
from testkit.otlp import OtlpReceiver

SUBMIT = "llmchatlinker.orchestrator.v1.OrchestratorService/Submit"
ORCHESTRATOR = "orchestrator"
# The server side of each kind's last unit call: once exported, so is the rest of its trace.
LAST_STEP = {"generate": ("llm_unit", "llmchatlinker.llm.v1.LlmService/GenerateReply"),
             "user_create": ("db_unit", "llmchatlinker.db.v1.RecordService/PutResults"),
             "user_get": ("user_unit", "llmchatlinker.user.v1.UserService/BatchGetUsers")}
WARM = 20


async def _one_at_a_time(side: Side, kind: str, count: int) -> list[float]:
    """Client-side times: a generation's time to first token, another instruction's latency."""
    if kind == "generate":
        side.forget()
        await side.ttft(count)
        return side.ttfts
    times = []
    for _ in range(count):
        began = time.perf_counter()
        if kind == "user_create":
            await side.client.run(user_create=pb.UserCreate(username=unique_name("path")))
        else:
            await side.client.run(user_get=pb.UserGet(user_id=side.user_ids[0]))
        times.append(time.perf_counter() - began)
    return times


async def run(samples: int, kind: str,
              options: SuiteOptions) -> tuple[list[float], dict[tuple[str, str], tuple[list[float], list[float]]]]:
    log_dir = REPO / "bench" / "results" / "logs" / "critical_path"
    log_dir.mkdir(parents=True, exist_ok=True)
    receiver = OtlpReceiver().start()
    options.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    side = Side("traced", Suite(options, log_dir))
    try:
        async with started([side], log_dir, 1):
            await _one_at_a_time(side, kind, WARM)
            times = await _one_at_a_time(side, kind, samples)
            # Each service exports on its own schedule: wait for the last step of every instruction.
            last = LAST_STEP[kind]
            spans = await asyncio.to_thread(receiver.wait_for, lambda found: all(
                sum(s.service == service and s.name == name for s in found) >= WARM + samples
                for service, name in ((ORCHESTRATOR, SUBMIT), last)))
    finally:
        receiver.stop()
    by_trace = collections.defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    steps: dict[tuple[str, str], tuple[list[float], list[float]]] = collections.defaultdict(lambda: ([], []))
    traces = [t for t in by_trace.values() if any(s.name == SUBMIT for s in t)][-samples:]
    for trace in traces:
        began = next(s.start_ns for s in trace if s.name == SUBMIT)
        for span in trace:
            offsets, durations = steps[(span.service, span.name)]
            offsets.append((span.start_ns - began) / 1e6)
            durations.append((span.end_ns - span.start_ns) / 1e6)
    return times, steps


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.critical_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--kind", choices=sorted(LAST_STEP), default="generate")
    parser.add_argument("--postgres", action="store_true", help="the units on PostgreSQL, not SQLite")
    parser.add_argument("--postgres-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    parser.add_argument("--limits", action="store_true", help="per-user limits on every user (bench.resilience's)")
    args = parser.parse_args()
    options = SuiteOptions(postgres_url=args.postgres_url if args.postgres else None,
                           env=dict(LIMITS) if args.limits else {})
    times, steps = asyncio.run(run(args.samples, args.kind, options))
    seen = "time to first token" if args.kind == "generate" else "latency"
    print(f"{args.kind}: {seen} at the client, p50 {median(times) * 1000:.2f} ms ({len(times)}, traced)")
    print(f"{'begins (ms)':>11} {'takes (ms)':>10}  step")
    for (service, name), (offsets, durations) in sorted(steps.items(), key=lambda item: median(item[1][0])):
        print(f"{median(offsets):>11.2f} {median(durations):>10.2f}  {service}: {name.rsplit('.', 1)[-1]}")


if __name__ == "__main__":
    main()
