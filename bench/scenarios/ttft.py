"""2 (and 6): time to first token through each path, alternated in one run, at 1 and 100 streams."""

from __future__ import annotations

from bench import floors, models
from bench.context import DIRECT, Bench
from bench.report import Figure
from bench.stats import percentile

# ms added, by streams at once and quantile (issue 16; one stream's p99 from issue 4)
TARGETS = {1: {"p50": 4.0, "p99": 20.0}, 100: {"p50": 20.0, "p99": 60.0}}
QUANTILES = {"p50": 50, "p95": 95, "p99": 99}
WIDE = 100


def _added(ttfts: dict[str, list[float]], q: int) -> dict[str, float]:
    """Added latency as a difference of percentiles, in ms (the paths are not the same requests)."""
    base = percentile(ttfts[DIRECT], q)
    return {path: (percentile(v, q) - base) * 1000 for path, v in ttfts.items() if path != DIRECT} | \
        {DIRECT: base * 1000}


async def run(bench: Bench) -> list[Figure]:
    samples = 40 if bench.quick else 120
    rounds = 1 if bench.quick else 2
    chats = await bench.world.ensure_chats(bench.client, WIDE)
    for path in bench.paths:
        for _ in range(5):
            await bench.stream(path, models.FAST, chats[0])

    single: dict[str, list[float]] = {path: [] for path in bench.paths}
    errors: dict[str, int] = {path: 0 for path in bench.paths}
    for i in range(samples):
        for path in bench.paths:
            timeline = await bench.stream(path, models.FAST, chats[0])
            if timeline.ttft is None:
                errors[path] += 1
            else:
                single[path].append(timeline.ttft)
        if (i + 1) % 50 == 0:
            bench.progress(f"1 stream: {i + 1}/{samples} samples per path")

    wide: dict[str, list[float]] = {path: [] for path in bench.paths}
    for round_ in range(rounds):
        for path in bench.paths:
            _, timelines = await bench.burst(path, models.FAST, WIDE)
            wide[path] += [t.ttft for t in timelines if t.ttft is not None]
            errors[path] += sum(t.ttft is None for t in timelines)
        bench.progress(f"{WIDE} streams: round {round_ + 1}/{rounds}")

    figures = []
    for streams, label, ttfts in ((1, "1 stream", single), (WIDE, f"{WIDE} streams", wide)):
        for name, q in QUANTILES.items():
            added = _added(ttfts, q)
            target = TARGETS[streams].get(name)
            figures.append(Figure(
                "2", f"TTFT added {name}, {label}", "ms", added["us"], added[DIRECT], added.get("litellm"),
                floors.added_ttft("p99" if q == 99 else "p50") if q != 95 else None,
                target=f"<= {target:g} ms" if target else "", met=(added["us"] <= target) if target else None,
                note="direct column: its raw TTFT"))
    bench.details["ttft"] = {"samples_s": {"single": single, "wide": wide}, "errors": errors}
    if any(errors.values()):
        bench.notes.append(f"TTFT: streams without a first token: {errors}")
    return figures
