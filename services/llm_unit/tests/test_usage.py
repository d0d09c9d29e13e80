"""Usage records: every generation's tokens as the provider reported them (estimated, and counted as
such, when it reported none), its model, provider, user, chat and timings; summed by ListUsage."""

import datetime

import grpc
import pytest
from google.protobuf import timestamp_pb2

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.llm_unit import store
from services.common.config import SettingError
from testkit.llm_unit import OLLAMA, OPENAI, add_llm, add_provider, expect_error, generate, running_unit, settings_for

HELLO = [pb.ConversationMessage(role="system", content="be brief"),
         pb.ConversationMessage(role="user", content="hello big world")]


async def usage(stub, group_by, **fields) -> list[pb.UsageSummary]:
    return list((await stub.ListUsage(pb.ListUsageRequest(group_by=group_by, **fields))).summaries)


def records(unit) -> list:
    with unit.server.database.reading() as connection:
        return connection.execute(store.UsageRow.__table__.select().order_by("seq")).all()


@pytest.mark.parametrize("kind", [OPENAI, OLLAMA], ids=["openai", "ollama"])
async def test_a_generation_is_recorded_with_the_tokens_the_provider_reported(sqlite_unit, provider_server, kind):
    url = provider_server.openai_url if kind == OPENAI else provider_server.ollama_url
    provider = await add_provider(sqlite_unit.stub, url=url, kind=kind)
    llm = await add_llm(sqlite_unit.stub, provider.provider_id, "echo@tokens=7,latency_ms=50")

    _, final = await generate(sqlite_unit.stub, llm.llm_id, messages=HELLO, user_id="u-1", chat_id="c-1")

    (summary,) = await usage(sqlite_unit.stub, pb.USAGE_GROUPING_USER)  # writes the records first
    (row,) = records(sqlite_unit)
    # The stand-in counts the words of every message sent (5) and the tokens it sends (7).
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (5, 7)
    assert (row.prompt_tokens, row.completion_tokens, row.estimated) == (5, 7, False)
    assert (row.user_id, row.chat_id, row.llm_id, row.provider_id) == ("u-1", "c-1", llm.llm_id, provider.provider_id)
    assert 50 <= row.time_to_first_token_ms <= row.duration_ms and row.attempts == 1
    assert (summary.key, summary.generations, summary.prompt_tokens, summary.completion_tokens,
            summary.estimated_generations) == ("u-1", 1, 5, 7, 0)


async def test_a_provider_that_reports_no_counts_is_estimated_and_marked(sqlite_unit, provider_server):
    provider = await add_provider(sqlite_unit.stub, url=provider_server.openai_url)
    llm = await add_llm(sqlite_unit.stub, provider.provider_id, "echo@usage=off")

    _, final = await generate(sqlite_unit.stub, llm.llm_id, messages=HELLO)

    (summary,) = await usage(sqlite_unit.stub, pb.USAGE_GROUPING_LLM)  # writes the records first
    (row,) = records(sqlite_unit)
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (0, 0)  # as reported
    # 23 characters sent, 21 received ("echo: hello big world"), at about 4 characters a token.
    assert (row.prompt_tokens, row.completion_tokens, row.estimated) == (6, 6, True)
    assert summary.estimated_generations == 1


async def test_the_model_that_answered_is_the_one_charged(sqlite_unit, provider_server):
    provider = await add_provider(sqlite_unit.stub, url=provider_server.openai_url)
    backup = await add_llm(sqlite_unit.stub, provider.provider_id, "backup")
    llm = await add_llm(sqlite_unit.stub, provider.provider_id, "m@fail=401", fallback_llm_ids=[backup.llm_id])

    await generate(sqlite_unit.stub, llm.llm_id)

    assert [s.key for s in await usage(sqlite_unit.stub, pb.USAGE_GROUPING_LLM)] == [backup.llm_id]


async def test_usage_is_summed_per_user_model_and_provider_over_a_time_range_in_pages(sqlite_unit, provider_server):
    first = await add_provider(sqlite_unit.stub, name="first", url=provider_server.openai_url)
    second = await add_provider(sqlite_unit.stub, name="second", url=provider_server.openai_url)
    a = await add_llm(sqlite_unit.stub, first.provider_id, "a@tokens=2")
    b = await add_llm(sqlite_unit.stub, second.provider_id, "b@tokens=3")
    for llm, user in [(a, "u-1"), (a, "u-2"), (b, "u-2"), (b, "u-3")]:
        await generate(sqlite_unit.stub, llm.llm_id, user_id=user)

    by_user = {s.key: s.completion_tokens for s in await usage(sqlite_unit.stub, pb.USAGE_GROUPING_USER)}
    by_llm = {s.key: s.generations for s in await usage(sqlite_unit.stub, pb.USAGE_GROUPING_LLM)}
    by_provider = {s.key: s.completion_tokens for s in await usage(sqlite_unit.stub, pb.USAGE_GROUPING_PROVIDER)}
    assert by_user == {"u-1": 2, "u-2": 5, "u-3": 3}
    assert by_llm == {a.llm_id: 2, b.llm_id: 2}
    assert by_provider == {first.provider_id: 4, second.provider_id: 6}

    page = await sqlite_unit.stub.ListUsage(pb.ListUsageRequest(group_by=pb.USAGE_GROUPING_USER, page_size=2))
    rest = await sqlite_unit.stub.ListUsage(pb.ListUsageRequest(group_by=pb.USAGE_GROUPING_USER, page_size=2,
                                                                 page_token=page.next_page_token))
    assert [s.key for s in page.summaries] == ["u-1", "u-2"] and [s.key for s in rest.summaries] == ["u-3"]
    assert rest.next_page_token == ""

    later = timestamp_pb2.Timestamp()
    later.FromDatetime(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1))
    assert await usage(sqlite_unit.stub, pb.USAGE_GROUPING_USER, start_time=later) == []
    assert len(await usage(sqlite_unit.stub, pb.USAGE_GROUPING_USER, end_time=later)) == 3


async def test_list_usage_refuses_a_missing_grouping_and_a_backwards_range(sqlite_unit):
    await expect_error(usage(sqlite_unit.stub, pb.USAGE_GROUPING_UNSPECIFIED), grpc.StatusCode.INVALID_ARGUMENT,
                       "INVALID_GROUPING")
    await expect_error(usage(sqlite_unit.stub, pb.USAGE_GROUPING_USER, start_time=timestamp_pb2.Timestamp(seconds=10),
                             end_time=timestamp_pb2.Timestamp(seconds=5)),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TIME_RANGE")


async def test_usage_records_survive_a_restart_on_postgresql_and_sqlite(unit, provider_server):
    provider = await add_provider(unit.stub, url=provider_server.openai_url)
    llm = await add_llm(unit.stub, provider.provider_id, "echo")
    await generate(unit.stub, llm.llm_id, user_id="u-9")

    await unit.server.stop(grace=1)  # writes what the ledger holds

    assert [(r.user_id, r.llm_id) for r in records(unit)] == [("u-9", llm.llm_id)]


async def test_with_usage_accounting_off_nothing_is_recorded_and_usage_is_not_reported(tmp_path, provider_server):
    settings = settings_for(f"sqlite:///{tmp_path / 'unit.db'}", usage_accounting=False)
    async with running_unit(settings) as unit:
        provider = await add_provider(unit.stub, url=provider_server.openai_url)
        llm = await add_llm(unit.stub, provider.provider_id, "echo@tokens=7")

        _, final = await generate(unit.stub, llm.llm_id, messages=HELLO, user_id="u-1")

        assert final.usage.completion_tokens == 7  # the caller still gets the provider's counts
        await expect_error(unit.stub.ListUsage(pb.ListUsageRequest(group_by=pb.USAGE_GROUPING_USER)),
                           grpc.StatusCode.FAILED_PRECONDITION, "USAGE_ACCOUNTING_OFF")
    assert records(unit) == []  # read after the unit's stop, which writes whatever its ledger holds


async def test_with_usage_accounting_off_token_budgets_are_refused_and_rates_allowed(tmp_path):
    settings = settings_for(f"sqlite:///{tmp_path / 'unit.db'}", usage_accounting=False)
    async with running_unit(settings) as unit:
        await expect_error(unit.stub.SetUserLimits(pb.SetUserLimitsRequest(user_id="u-1", tokens_per_day=1000)),
                           grpc.StatusCode.FAILED_PRECONDITION, "USAGE_ACCOUNTING_OFF")
        limited = await unit.stub.SetUserLimits(pb.SetUserLimitsRequest(user_id="u-1", requests_per_minute=5))
        assert (limited.limits.requests_per_minute, limited.limits.tokens_per_day) == (5, 0)


def test_default_token_budgets_without_usage_accounting_refuse_to_start(tmp_path):
    with pytest.raises(SettingError, match="USAGE_ACCOUNTING is false, so no tokens are counted"):
        settings_for(f"sqlite:///{tmp_path / 'unit.db'}", usage_accounting=False,
                     default_user_limits=(0, 1000, 0))
