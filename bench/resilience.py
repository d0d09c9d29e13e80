"""`python -m bench.resilience`: what provider resilience, usage accounting and per-user limits cost
on the hot path, with them and without them, in one run.

Three suites side by side on the same stand-in LLM:
- "off": no retries (LLMCHATLINKER_LLM_UNIT_RETRIES=0), no circuit breakers (_BREAKER_FAILURES=0),
  no usage records (_USAGE_ACCOUNTING=false), no limits, no concurrency bound, no fallbacks;
- "on": the defaults (2 retries, breakers, usage records), a concurrency bound on the provider
  (high enough never to queue) and a fallback model on every model (never needed: the provider
  does not fail);
- "limits": "on" plus a per-user rate limit and token budgets on every user (suite-wide defaults,
  none reached), so each generation is also admitted before its provider is called: against the
  tokens its user has spent (kept by llm_unit, read again in the background) and a share of the
  user's rate taken from the database once a minute per user (the bench's 256 streams come from
  256 users).
The same loads alternate between them, in every order in turn (bench.sides.order_of_round): 64 and
256 simultaneous generations against a provider that takes 500 ms (their wall time and the suite's
CPU per generation), each burst after SETTLE_SECONDS of quiet, and generations one at a time
answered at once, each sample taken on the provider directly, then on each suite, for the time to
first token they add. Medians over the rounds; at 256 at once the two cores are saturated and
single rounds' walls scatter by ±20 % (the CPU per generation by as much), hence 18 rounds (each
of the six orders three times) by default: with 7, medians 5 % apart were noise.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

from bench import models
from bench.openai_client import OpenAiStreamer
from bench.sides import Side, change_pct, median, order_of_round, save, started
from bench.stats import percentile
from bench.submit_client import SubmitClient
from bench.suite import REPO, Suite, SuiteOptions
from bench.world import World

RESULTS = REPO / "bench" / "results"
LEVELS = (64, 256)
TARGET_PCT = 5.0
OFF = {"LLMCHATLINKER_LLM_UNIT_RETRIES": "0", "LLMCHATLINKER_LLM_UNIT_BREAKER_FAILURES": "0",
       "LLMCHATLINKER_LLM_UNIT_USAGE_ACCOUNTING": "false"}
# Limits no bench generation comes near: each generation still pays for its admission and count.
LIMITS = {"LLMCHATLINKER_LLM_UNIT_DEFAULT_REQUESTS_PER_MINUTE": "1000000",
      "LLMCHATLINKER_LLM_UNIT_DEFAULT_TOKENS_PER_DAY": "2000000000",
      "LLMCHATLINKER_LLM_UNIT_DEFAULT_TOKENS_PER_MONTH": "2000000000"}
BOUND = 100_000  # the provider's max_in_flight and max_waiting: a bound that is checked, never reached
# Seconds of quiet before each burst, so that the last burst's tail (its usage ledger's flush
# 200 ms after it, the database's writes) is not counted in the next side's wall.
SETTLE_SECONDS = 0.5


async def with_every_feature(client: SubmitClient, world: World) -> None:
    """The provider bounded, and every model with another as its fallback."""
    await client.run(llm_provider_update=pb.LlmProviderUpdate(provider_id=world.provider_id, max_in_flight=BOUND,
                                                              max_waiting=BOUND))
    ids = list(world.llm_ids.values())
    for position, llm_id in enumerate(ids):
        backup = ids[(position + 1) % len(ids)]
        await client.run(llm_update=pb.LlmUpdate(llm_id=llm_id,
                                                 fallback_llm_ids=llm_pb.FallbackLlmIds(llm_ids=[backup])))


async def run(args: argparse.Namespace) -> dict:
    log_dir = RESULTS / "logs" / "resilience"
    postgres = args.postgres_url if args.postgres else None
    sides = [Side(name, Suite(SuiteOptions(postgres_url=postgres, env=env), log_dir / name))
             for name, env in (("off", OFF), ("on", {}), ("limits", LIMITS))]
    for side in sides:
        (log_dir / side.name).mkdir(parents=True, exist_ok=True)
    direct_ttfts: list[float] = []
    configure = {"on": with_every_feature, "limits": with_every_feature}
    async with started(sides, log_dir, max(LEVELS), configure) as provider:
        async with OpenAiStreamer(f"http://127.0.0.1:{provider.port}/v1/chat/completions") as direct:
            for side in sides:  # warm: connections, caches, every chat's first turn
                await side.burst(max(LEVELS))
                await side.ttft(10)
                side.forget()
            samples = 30 if args.quick else 100
            for round_ in range(args.rounds):
                order = order_of_round(sides, round_)
                for n in LEVELS:
                    for side in order:
                        await asyncio.sleep(SETTLE_SECONDS)
                        await side.burst(n)
                for _ in range(samples):  # sample by sample, so drift falls on all three alike
                    timeline = await direct.stream(models.FAST, "hello")
                    if timeline.ttft is not None:
                        direct_ttfts.append(timeline.ttft)
                    for side in order:
                        await side.ttft()
                print(f"  round {round_ + 1}/{args.rounds}: " + "; ".join(
                    f"{s.name}: " + ", ".join(f"{n} at once {s.walls[n][-1]:.3f} s" for n in LEVELS)
                    + f", TTFT p50 {median(s.ttfts) * 1000:.2f} ms" for s in sides)
                    + f"; direct TTFT p50 {median(direct_ttfts) * 1000:.2f} ms", flush=True)
    off = sides[0]

    def added(side: Side, q: int) -> float:
        return (percentile(side.ttfts, q) - percentile(direct_ttfts, q)) * 1000

    def figures(side: Side) -> dict[str, float]:
        return {**{f"wall_s_{n}_simultaneous": median(side.walls[n]) for n in LEVELS},
                **{f"added_ttft_p{q}_ms": added(side, q) for q in (50, 99)},
                **{f"suite_cpu_ms_per_gen_{n}": median(side.cpu_ms_per_generation[n]) for n in LEVELS}}

    measured = {side.name: figures(side) for side in sides}
    return {"figures": {name: {"off": value, **{side.name: measured[side.name][name] for side in sides[1:]},
                               **{f"{side.name}_change_pct": change_pct(value, measured[side.name][name])
                                  for side in sides[1:]}}
                        for name, value in measured["off"].items()},
            "target": f"within {TARGET_PCT:g} % of off", "rounds": args.rounds,
            "database": "PostgreSQL" if postgres else "SQLite",
            "direct_ttft_p50_ms": median(direct_ttfts) * 1000, "errors": {side.name: side.errors for side in sides},
            "samples": {side.name: {"walls_s": side.walls, "cpu_ms_per_generation": side.cpu_ms_per_generation,
                                    "ttft_count": len(side.ttfts)} for side in sides}}


def _change(pct: float | None) -> str:
    if pct is None:
        return f"{'-':>8}"
    return f"{pct:+7.1f}%" + ("" if pct <= TARGET_PCT else "!")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.resilience", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=18)
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run, noisier")
    parser.add_argument("--postgres", action="store_true", help="both suites' units on PostgreSQL, not SQLite")
    parser.add_argument("--postgres-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    parser.add_argument("--json", type=Path, default=RESULTS / "resilience.json")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    compared = ("on", "limits")
    print(f"\n{'figure':<26} {'off':>8} " + " ".join(f"{name:>8} {'change':>8}" for name in compared)
          + f"  target: {report['target']}")
    for name, figure in report["figures"].items():
        print(f"{name:<26} {figure['off']:>8.3f} " + " ".join(
            f"{figure[side]:>8.3f} {_change(figure[side + '_change_pct'])}" for side in compared))
    print(f"direct TTFT p50 {report['direct_ttft_p50_ms']:.2f} ms; errors: {report['errors']}")
    save(report, args.json)


if __name__ == "__main__":
    main()
