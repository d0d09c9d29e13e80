"""Users' limits: a rate of generations per minute and token budgets per day and per month, with
suite-wide defaults, counted in the database (so they hold across replicas). A generation over one is
refused before its provider is called, saying which limit and when to try again."""

import asyncio
import datetime

import grpc
import pytest

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.common.errors import error_info
from testkit.llm_unit import add_llm, add_provider, expect_error, generate, running_unit, settings_for

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
HELLO = [pb.ConversationMessage(role="user", content="one two three four five")]


class Clock:
    """The wall clock the unit's limit windows read; tests move it."""

    def __init__(self) -> None:
        self.time = datetime.datetime(2026, 5, 31, 23, 58, 30, tzinfo=datetime.timezone.utc)

    def __call__(self) -> datetime.datetime:
        return self.time

    def move(self, **delta) -> None:
        self.time += datetime.timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


async def start(target, clock, **settings):
    return running_unit(settings_for(target.url, target.schema, **settings), now=clock)


async def model(stub, provider_server, name="echo@tokens=4") -> pb.Llm:
    provider = await add_provider(stub, url=provider_server.openai_url)
    return await add_llm(stub, provider.provider_id, name)


async def set_limits(stub, user_id="u-1", **limits) -> pb.UserLimits:
    return (await stub.SetUserLimits(pb.SetUserLimitsRequest(user_id=user_id, **limits))).limits


async def ask(stub, llm, user_id="u-1"):
    return await generate(stub, llm.llm_id, messages=HELLO, user_id=user_id)


async def refused(stub, llm, reason: str, user_id="u-1") -> dict:
    error = await expect_error(ask(stub, llm, user_id), EXHAUSTED, reason)
    return dict(error_info(error).metadata)


async def test_the_rate_refuses_the_next_generation_of_the_minute_and_allows_it_in_the_next(
        database_target, provider_server, clock):
    async with await start(database_target, clock) as unit:
        llm = await model(unit.stub, provider_server)
        await set_limits(unit.stub, requests_per_minute=2)
        for _ in range(2):
            await ask(unit.stub, llm)

        info = await refused(unit.stub, llm, "USER_RATE_LIMITED")

        assert info == {"retryTime": "2026-05-31T23:59:00Z", "retryAfterSeconds": "30"}
        assert provider_server.stats.started == 2  # refused before the provider was called
        await ask(unit.stub, llm, user_id="u-2")  # another user is not limited
        clock.move(seconds=30)
        await ask(unit.stub, llm)


async def test_generations_arriving_together_are_admitted_up_to_the_rate_and_the_rest_refused(
        database_target, provider_server, clock):
    async with await start(database_target, clock) as unit:
        llm = await model(unit.stub, provider_server)
        await set_limits(unit.stub, requests_per_minute=3)

        # Admitted together (one transaction), the same user's three within the rate and three past it.
        outcomes = await asyncio.gather(*(ask(unit.stub, llm) for _ in range(6)), ask(unit.stub, llm, user_id="u-2"),
                                        return_exceptions=True)

        refusals = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(refusals) == 3 and all(error_info(r).reason == "USER_RATE_LIMITED" for r in refusals)
        assert not isinstance(outcomes[-1], BaseException)  # the other user's, in the same batch
        assert provider_server.stats.started == 4


async def test_the_daily_budget_refuses_once_the_days_tokens_reach_it_and_allows_again_the_next_day(
        database_target, provider_server, clock):
    async with await start(database_target, clock) as unit:
        llm = await model(unit.stub, provider_server)  # 5 prompt tokens, 4 completion tokens
        await set_limits(unit.stub, tokens_per_day=10)
        for _ in range(2):  # 9 tokens, then 18: the one that crosses the budget is not cut short
            await ask(unit.stub, llm)
            await unit.stub.ListUsage(pb.ListUsageRequest(group_by=pb.USAGE_GROUPING_USER))  # counted now

        info = await refused(unit.stub, llm, "USER_DAILY_TOKENS_EXHAUSTED")

        assert info["retryTime"] == "2026-06-01T00:00:00Z"
        clock.move(minutes=2)
        await ask(unit.stub, llm)


async def test_the_monthly_budget_holds_across_days_and_allows_again_the_next_month(tmp_path, provider_server, clock):
    clock.time = datetime.datetime(2026, 5, 30, 12, 0, tzinfo=datetime.timezone.utc)
    async with running_unit(settings_for(f"sqlite:///{tmp_path / 'unit.db'}"), now=clock) as unit:
        llm = await model(unit.stub, provider_server)
        await set_limits(unit.stub, tokens_per_month=9)
        await ask(unit.stub, llm)
        await unit.stub.ListUsage(pb.ListUsageRequest(group_by=pb.USAGE_GROUPING_USER))
        clock.move(days=1)

        info = await refused(unit.stub, llm, "USER_MONTHLY_TOKENS_EXHAUSTED")

        assert info["retryTime"] == "2026-06-01T00:00:00Z"
        clock.move(days=1)
        await ask(unit.stub, llm)


async def test_suite_defaults_apply_to_users_without_limits_of_their_own(tmp_path, provider_server, clock):
    settings = settings_for(f"sqlite:///{tmp_path / 'unit.db'}", default_user_limits=(1, 0, 0))
    async with running_unit(settings, now=clock) as unit:
        llm = await model(unit.stub, provider_server)
        await ask(unit.stub, llm)
        await refused(unit.stub, llm, "USER_RATE_LIMITED")

        own = await set_limits(unit.stub, requests_per_minute=0)  # none for this user
        await ask(unit.stub, llm)
        default = (await unit.stub.GetUserLimits(pb.GetUserLimitsRequest(user_id="u-2"))).limits

        assert (own.requests_per_minute, default.requests_per_minute) == (0, 1)
        assert await ask(unit.stub, llm, user_id="") is not None  # a generation for no user has no limits


async def test_the_limits_hold_across_replicas(database_target, provider_server, clock):
    async with await start(database_target, clock) as first, await start(database_target, clock) as second:
        llm = await model(first.stub, provider_server)
        await set_limits(first.stub, requests_per_minute=3)

        for unit in (first, second, first):
            await ask(unit.stub, llm)

        await refused(second.stub, llm, "USER_RATE_LIMITED")


async def test_limits_are_checked(sqlite_unit):
    await expect_error(set_limits(sqlite_unit.stub, tokens_per_day=-1), grpc.StatusCode.INVALID_ARGUMENT,
                       "INVALID_LIMIT")
    await expect_error(set_limits(sqlite_unit.stub, user_id=""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_USER_ID")


async def admit(stub, *user_ids: str) -> pb.AdmitGenerationsResponse:
    return await stub.AdmitGenerations(pb.AdmitGenerationsRequest(user_ids=list(user_ids)))


async def test_generations_admitted_ahead_are_counted_once_and_those_over_the_rate_refused_alone(
        database_target, provider_server, clock):
    async with await start(database_target, clock) as unit:
        llm = await model(unit.stub, provider_server)
        await set_limits(unit.stub, requests_per_minute=2)

        answer = await admit(unit.stub, "u-1", "u-2", "u-1", "u-1", "x" * 129)

        assert answer.limits_in_force
        refusals = [a.refusal if a.HasField("refusal") else None for a in answer.admissions]
        assert refusals[:3] == [None, None, None]
        assert (refusals[3].code, refusals[3].reason, refusals[3].domain) == (EXHAUSTED.value[0], "USER_RATE_LIMITED",
                                                                            "llm.llmchatlinker.dev")
        assert dict(refusals[3].metadata) == {"retryTime": "2026-05-31T23:59:00Z", "retryAfterSeconds": "30"}
        assert (refusals[4].code, refusals[4].reason) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], "INVALID_USER_ID")
        # Admitted ahead: not counted again. Not admitted ahead: counted, and over the rate.
        await generate(unit.stub, llm.llm_id, messages=HELLO, user_id="u-1", admitted=True)
        await refused(unit.stub, llm, "USER_RATE_LIMITED")
        assert provider_server.stats.started == 1


async def test_admitting_says_whether_any_limits_are_in_force(sqlite_unit):
    assert not (await admit(sqlite_unit.stub, "u-1")).limits_in_force  # nothing counted, nothing to count

    await set_limits(sqlite_unit.stub, user_id="u-2", requests_per_minute=5)

    assert (await admit(sqlite_unit.stub, "u-1")).limits_in_force  # u-1 has none, but another user has
    await expect_error(admit(sqlite_unit.stub), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_BATCH_SIZE")
