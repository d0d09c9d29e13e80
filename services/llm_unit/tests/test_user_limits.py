"""Users' limits: a rate of generations per minute and token budgets per day and per month, with
suite-wide defaults, counted in the database (so they hold across replicas). A generation over one is
refused before its provider is called, saying which limit and when to try again."""

import asyncio
import datetime

import grpc
import pytest
import sqlalchemy as sa

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.common.errors import error_info
from testkit.backends import cut_connections
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


def minute_count(unit, user_id="u-1") -> int:
    """The generations of `user_id` counted in the database for the clock's minute, all replicas'."""
    with unit.server.database.engine.connect() as connection:
        return connection.execute(sa.text('SELECT sum(amount) FROM usage_counters'
                                          ' WHERE user_id = :user_id AND "window" = \'minute\''),
                                  {"user_id": user_id}).scalar_one()


async def test_a_high_rate_is_taken_from_the_database_a_share_at_a_time(database_target, provider_server, clock):
    async with await start(database_target, clock) as unit:
        llm = await model(unit.stub, provider_server)
        await set_limits(unit.stub, requests_per_minute=6_400)  # shares of 100

        for _ in range(3):
            await ask(unit.stub, llm)

        assert minute_count(unit) == 100  # one write for the three
        clock.move(minutes=1)  # a new minute: the units left of the last one are gone
        await ask(unit.stub, llm)
        assert minute_count(unit) == 200


async def test_replicas_taking_shares_never_admit_more_than_the_rate_between_them(
        database_target, provider_server, clock):
    async with await start(database_target, clock) as first, await start(database_target, clock) as second:
        llm = await model(first.stub, provider_server)
        await set_limits(first.stub, requests_per_minute=128)  # shares of 2
        await set_limits(second.stub, requests_per_minute=128)  # its cached limits cleared too

        admitted, refused_in_a_row = 0, 0
        for turn in range(300):
            unit = (first, second)[turn % 2]
            try:
                await ask(unit.stub, llm)
            except grpc.aio.AioRpcError as error:
                assert error_info(error).reason == "USER_RATE_LIMITED"
                refused_in_a_row += 1
                if refused_in_a_row == 2:
                    break
            else:
                admitted, refused_in_a_row = admitted + 1, 0

        assert 128 - 2 <= admitted <= 128  # at most a share left unused in the other replica
        assert minute_count(first) == 128


async def test_the_daily_budget_counts_this_replicas_tokens_at_once_and_anothers_once_read_again(
        database_target, provider_server, clock):
    async with await start(database_target, clock) as first, await start(database_target, clock) as second:
        llm = await model(first.stub, provider_server)  # 9 tokens a generation
        await set_limits(first.stub, tokens_per_day=20)
        await set_limits(second.stub, tokens_per_day=20)
        await ask(second.stub, llm)  # second reads what is spent (0) and keeps it, then adds its 9
        for _ in range(3):
            await ask(first.stub, llm)
        await first.stub.ListUsage(pb.ListUsageRequest(group_by=pb.USAGE_GROUPING_USER))  # 36 in all

        await refused(first.stub, llm, "USER_DAILY_TOKENS_EXHAUSTED")  # its own 27: at once
        await asyncio.sleep(1.1)  # second's read is old now: read again in the background ...
        await ask(second.stub, llm)  # ... while this one is let through on it (9, then 18 of its own)
        await asyncio.sleep(0.1)
        await refused(second.stub, llm, "USER_DAILY_TOKENS_EXHAUSTED")  # first's tokens, read


@pytest.mark.parametrize("database_target", ["postgresql"], indirect=True)
async def test_an_admission_on_a_cut_connection_is_unavailable_and_the_next_one_reconnects(
        database_target, provider_server, clock):
    settings = settings_for(database_target.url, database_target.schema, default_user_limits=(6_400, 1_000_000, 0))
    async with running_unit(settings, now=clock) as unit:
        llm = await model(unit.stub, provider_server)
        await ask(unit.stub, llm)  # its share taken and tokens read: the admission's own connections
        assert cut_connections(database_target)

        # A new user: their tokens spent must be read before the provider is called.
        await expect_error(ask(unit.stub, llm, user_id="u-2"), grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
        await ask(unit.stub, llm, user_id="u-2")
        assert provider_server.stats.started == 2
