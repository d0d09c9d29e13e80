"""`python -m bench.front_doors`: does a second orchestrator process make the suite faster here?

One orchestrator runs every instruction's cycle on one event loop (one core at most). Replicas on
one RabbitMQ queue split the work in two: the taker runs the cycles, a standby's front door takes
Submit calls, queues them and streams their results back from its own reply queue. Two suites on
RabbitMQ and PostgreSQL side by side, one with one orchestrator and one with two, the callers
spread evenly over the front doors; alternately, round by round: USER_GET through Submit at 8 and
64 clients, and the time to first token of 100 generations at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from bench import models, proc
from bench.load import LoadResult, submit_instruction, submit_load
from bench.sides import Side, median, order_of_round, save, started
from bench.stats import percentile
from bench.submit_client import SubmitClient, channel
from bench.suite import REPO, Suite, SuiteOptions, delete_queues

RESULTS = REPO / "bench" / "results"
CLIENT_LEVELS = (8, 64)
STREAMS = 100


async def spread_load(side: Side, clients: int, seconds: float) -> LoadResult:
    """USER_GET from `clients` clients, spread evenly over the suite's front doors."""
    doors = side.suite.front_doors
    watched = {**side.suite.pids(), **proc.broker_pids()}
    results = await asyncio.gather(*(submit_load(door, submit_instruction("USER_GET", side.user_ids),
                                                 clients // len(doors), seconds, watched)
                                     for door in doors))
    joined = LoadResult(max(r.seconds for r in results))
    for result in results:
        joined.latencies += result.latencies
        joined.errors += result.errors
    joined.cpu_s = results[0].cpu_s  # every load watched the same processes over the same time
    return joined


async def spread_ttfts(side: Side, clients: list[SubmitClient]) -> list[float]:
    chats = side.world.chats[:STREAMS]
    timelines = await asyncio.gather(*(
        clients[i % len(clients)].generate(side.world.speakers[chat], chat, side.world.llm_ids[models.FAST], "hello")
        for i, chat in enumerate(chats)))
    side.errors += sum(not t.ok for t in timelines)
    return [t.ttft for t in timelines if t.ttft is not None]


async def run(args: argparse.Namespace) -> dict:
    log_dir = RESULTS / "logs" / "front_doors"
    queues = {count: f"bench_front_doors_{os.getpid()}_{count}" for count in (1, 2)}
    sides = [Side(f"{count} orchestrator{'s' if count > 1 else ''}",
                  Suite(SuiteOptions(amqp_url=args.amqp_url, postgres_url=args.postgres_url, queue=queues[count],
                                     orchestrators=count), log_dir / str(count)))
             for count in (1, 2)]
    for side in sides:
        side.suite.log_dir.mkdir(parents=True, exist_ok=True)
    seconds = 1.5 if args.quick else 3.0
    rates = {side.name: {n: [] for n in CLIENT_LEVELS} for side in sides}
    p50s = {side.name: {n: [] for n in CLIENT_LEVELS} for side in sides}
    cpu = {side.name: {n: [] for n in CLIENT_LEVELS} for side in sides}
    ttfts: dict[str, list[float]] = {side.name: [] for side in sides}
    try:
        async with started(sides, log_dir, STREAMS):
            door_clients = {side.name: [SubmitClient(channel(door)) for door in side.suite.front_doors]
                            for side in sides}
            for side in sides:  # warm
                await spread_load(side, 8, 0.5)
                await spread_ttfts(side, door_clients[side.name])
            for round_ in range(args.rounds):
                order = order_of_round(sides, round_)
                for n in CLIENT_LEVELS:
                    for side in order:
                        result = await spread_load(side, n, seconds)
                        rates[side.name][n].append(result.rate)
                        p50s[side.name][n].append(percentile(result.latencies, 50) * 1000)
                        cpu[side.name][n].append({k: v / result.seconds for k, v in result.cpu_s.items()})
                        side.errors += result.errors
                for side in order:
                    ttfts[side.name] += await spread_ttfts(side, door_clients[side.name])
                print(f"  round {round_ + 1}/{args.rounds}: " + "; ".join(
                    f"{s.name}: " + ", ".join(f"{n} clients {rates[s.name][n][-1]:.0f}/s" for n in CLIENT_LEVELS)
                    + f", 100-stream TTFT p50 {median(ttfts[s.name]) * 1000:.0f} ms" for s in sides), flush=True)
    finally:
        delete_queues(args.amqp_url, [name + suffix for name in queues.values() for suffix in ("", ".dead")])

    def busiest(name: str, n: int) -> dict[str, float]:
        """Cores each process used, from the round with the median rate."""
        ranked = sorted(zip(rates[name][n], cpu[name][n]), key=lambda pair: pair[0])
        return {k: round(v, 2) for k, v in ranked[len(ranked) // 2][1].items()}

    return {"sides": {side.name: {
        **{f"user_get_{n}_clients_per_s": median(rates[side.name][n]) for n in CLIENT_LEVELS},
        **{f"user_get_{n}_clients_p50_ms": median(p50s[side.name][n]) for n in CLIENT_LEVELS},
        **{f"cores_used_at_{n}_clients": busiest(side.name, n) for n in CLIENT_LEVELS},
        "ttft_100_streams_p50_ms": median(ttfts[side.name]) * 1000,
        "ttft_100_streams_p99_ms": percentile(ttfts[side.name], 99) * 1000,
        "errors": side.errors} for side in sides}, "rounds": args.rounds, "time": time.strftime("%Y-%m-%d %H:%M")}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.front_doors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--postgres-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    parser.add_argument("--json", type=Path, default=RESULTS / "front_doors.json")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    for name, figures in report["sides"].items():
        print(f"\n{name}:")
        for figure, value in figures.items():
            print(f"  {figure:<30} {value if isinstance(value, dict) else round(value, 2)}")
    save(report, args.json)


if __name__ == "__main__":
    main()
