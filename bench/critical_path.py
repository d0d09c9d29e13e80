"""`python -m bench.critical_path`: where one generation's time goes, step by step, from its spans.

A suite sends every span to the test kit's OTLP receiver; generations run one at a time (the
stand-in LLM answering at once), and for each step (a service and span name) this prints when it
began after the Submit call arrived and how long it took, as medians over the generations, beside
the time to first token the client saw. Tracing adds its own cost to every step (some 30 µs a
span), so read the shape (which steps are sequential, where the gaps are), not the totals.
"""

from __future__ import annotations

import argparse
import asyncio
import collections

from bench.sides import Side, median, started
from bench.suite import REPO, Suite, SuiteOptions
from testkit.otlp import OtlpReceiver

SUBMIT = "llmchatlinker.orchestrator.v1.OrchestratorService/Submit"
GENERATE = "llmchatlinker.llm.v1.LlmService/GenerateReply"
ORCHESTRATOR = "orchestrator"
WARM = 20


async def run(samples: int) -> tuple[list[float], dict[tuple[str, str], tuple[list[float], list[float]]]]:
    log_dir = REPO / "bench" / "results" / "logs" / "critical_path"
    log_dir.mkdir(parents=True, exist_ok=True)
    receiver = OtlpReceiver().start()
    side = Side("traced", Suite(SuiteOptions(env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}), log_dir))
    try:
        async with started([side], log_dir, 1):
            await side.ttft(WARM)
            side.forget()
            await side.ttft(samples)
            # Each service exports on its own schedule: wait for the last step of every generation.
            spans = await asyncio.to_thread(receiver.wait_for, lambda found: all(
                sum(s.service == service and s.name == name for s in found) >= WARM + samples
                for service, name in ((ORCHESTRATOR, SUBMIT), ("llm_unit", GENERATE))))
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
    return side.ttfts, steps


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.critical_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    ttfts, steps = asyncio.run(run(args.samples))
    print(f"time to first token at the client, p50: {median(ttfts) * 1000:.2f} ms ({len(ttfts)} generations, traced)")
    print(f"{'begins (ms)':>11} {'takes (ms)':>10}  step")
    for (service, name), (offsets, durations) in sorted(steps.items(), key=lambda item: median(item[1][0])):
        print(f"{median(offsets):>11.2f} {median(durations):>10.2f}  {service}: {name.rsplit('.', 1)[-1]}")


if __name__ == "__main__":
    main()
