"""1 (and 6): N simultaneous generations against a provider that takes 500 ms."""

from __future__ import annotations

from bench import floors, models
from bench.context import US, Bench
from bench.proc import CpuWatch
from bench.report import Figure
from bench.stats import median

LEVELS = (1, 16, 64, 256)
TARGET_RATIO = {64: 1.2, 256: 1.4}  # issue 16
PROVIDER_S = 0.5


async def run(bench: Bench) -> list[Figure]:
    rounds = 1 if bench.quick else 2
    await bench.world.ensure_chats(bench.client, max(LEVELS))
    for path in bench.paths:  # warm connections and code paths
        await bench.burst(path, models.SLOW, 4)
    figures, detail = [], {}
    for n in LEVELS:
        walls: dict[str, list[float]] = {path: [] for path in bench.paths}
        failed: dict[str, int] = {path: 0 for path in bench.paths}
        cpu: dict[str, float] = {}
        watch = CpuWatch(bench.service_pids())
        for round_ in range(rounds):
            for path in bench.paths:  # alternated, so drift hits every path alike
                if path == US:
                    watch.start()
                wall, timelines = await bench.burst(path, models.SLOW, n)
                if path == US:
                    for name, seconds in watch.stop().items():
                        cpu[name] = cpu.get(name, 0.0) + seconds
                walls[path].append(wall)
                failed[path] += sum(not t.ok for t in timelines)
                errors = {t.error for t in timelines if not t.ok}
                bench.progress(f"N={n} round {round_ + 1}/{rounds} {path}: {wall:.3f} s"
                               + (f", {failed[path]} failed: {sorted(errors)[:2]}" if errors else ""))
        value = {path: median(w) for path, w in walls.items()}
        per_generation = {name: seconds / (n * rounds) * 1000 for name, seconds in cpu.items()}
        detail[n] = {"walls_s": walls, "failed": failed, "suite_cpu_ms_per_generation": per_generation}
        if n == max(LEVELS):
            split = ", ".join(f"{name} {ms:.1f}" for name, ms in per_generation.items())
            bench.notes.append(f"concurrency N={n}: suite CPU ms per generation: {split} "
                               f"(total {sum(per_generation.values()):.1f})")
        floor = floors.concurrency_wall(n)
        ratio = value["us"] / PROVIDER_S
        target = TARGET_RATIO.get(n)
        figures.append(Figure(
            "1", f"wall, {n} simultaneous", "s", value["us"], value["direct"], value.get("litellm"), floor,
            target=f"<= {target}x 500 ms" if target else "", met=(ratio <= target) if target else None,
            note=f"{ratio:.2f}x 500 ms" + (f"; {failed['us']} failed" if failed["us"] else "")))
    bench.details["concurrency"] = detail
    return figures
