"""Retries, Retry-After, fallbacks, the circuit breaker and the per-provider concurrency bound, with the
stand-in provider's failure modes (`fail=`, `fail_first=`, `retry_after=`, `latency_ms=`)."""

import asyncio
import time

import grpc
import pytest

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.llm_unit.providers import retry_after
from testkit.llm_unit import add_llm, add_provider, expect_error, generate, running_unit, settings_for
from testkit.ports import closed_port


@pytest.fixture
async def fast_unit(tmp_path):
    """Short back-off, and no breaker (its tests start their own unit)."""
    settings = settings_for(f"sqlite:///{tmp_path / 'unit.db'}", retry_backoff_ms=10, breaker_failures=0,
                            model_cache_ttl_ms=0)
    async with running_unit(settings) as running:
        yield running


async def model_at(stub, url: str, model: str, name: str = "acme", **fields) -> pb.Llm:
    provider = await add_provider(stub, name=name, url=url)
    return await add_llm(stub, provider.provider_id, model, **fields)


@pytest.mark.parametrize("fail", ["500", "429", "refuse"])
async def test_a_failure_before_the_first_token_is_retried_until_the_provider_answers(fast_unit, provider_server,
                                                                                       fail):
    llm = await model_at(fast_unit.stub, provider_server.openai_url, f"m@fail={fail},fail_first=2,retry_after=0")

    deltas, final = await generate(fast_unit.stub, llm.llm_id)

    assert "".join(deltas) == final.content == "echo: hello big world"
    assert (final.attempts, final.llm_id) == (3, llm.llm_id)
    assert provider_server.stats.started == 3


async def test_retries_stop_after_the_configured_number(fast_unit, provider_server):
    llm = await model_at(fast_unit.stub, provider_server.openai_url, "m@fail=500")

    error = await expect_error(generate(fast_unit.stub, llm.llm_id), grpc.StatusCode.UNAVAILABLE, "PROVIDER_ERROR")

    assert error.details().endswith("(3 tries)")
    assert provider_server.stats.started == 3


async def test_retry_after_is_waited_for_before_the_next_try(fast_unit, provider_server):
    llm = await model_at(fast_unit.stub, provider_server.openai_url, "m@fail=429,fail_first=1,retry_after=1")

    started = time.monotonic()
    _, final = await generate(fast_unit.stub, llm.llm_id)

    assert time.monotonic() - started >= 1.0
    assert final.attempts == 2 and final.content


async def test_a_retry_after_past_the_deadline_goes_to_the_fallback_at_once(fast_unit, provider_server):
    backup = await model_at(fast_unit.stub, provider_server.openai_url, "backup", name="backup")
    llm = await model_at(fast_unit.stub, provider_server.openai_url, "m@fail=429,retry_after=30",
                         fallback_llm_ids=[backup.llm_id])

    started = time.monotonic()
    _, final = await generate(fast_unit.stub, llm.llm_id, timeout_ms=5000)

    assert time.monotonic() - started < 1.0
    assert (final.llm_id, final.provider_id, final.attempts) == (backup.llm_id, backup.provider_id, 2)


async def test_an_unreachable_provider_falls_back_to_the_next_model_in_order(fast_unit, provider_server):
    dead_url = f"http://127.0.0.1:{closed_port()}/v1/chat/completions"
    second = await model_at(fast_unit.stub, provider_server.openai_url, "second@fail=500", name="second")
    third = await model_at(fast_unit.stub, provider_server.openai_url, "third", name="third")
    llm = await model_at(fast_unit.stub, dead_url, "first", name="dead",
                         fallback_llm_ids=[second.llm_id, third.llm_id])

    deltas, final = await generate(fast_unit.stub, llm.llm_id)

    assert "".join(deltas) == "echo: hello big world"
    assert (final.llm_id, final.provider_id) == (third.llm_id, third.provider_id)
    assert final.attempts == 7  # 3 tries of each failing model, then the third answered
    assert [r["model"] for r in provider_server.requests] == ["second@fail=500"] * 3 + ["third"]


async def test_when_every_model_fails_the_last_failure_names_what_was_tried(fast_unit, provider_server):
    backup = await model_at(fast_unit.stub, provider_server.openai_url, "backup@fail=401", name="backup")
    dead_url = f"http://127.0.0.1:{closed_port()}/v1/chat/completions"
    llm = await model_at(fast_unit.stub, dead_url, "first", name="dead", fallback_llm_ids=[backup.llm_id])

    error = await expect_error(generate(fast_unit.stub, llm.llm_id), grpc.StatusCode.FAILED_PRECONDITION,
                               "PROVIDER_REJECTED_KEY")

    assert "tried 'first' at 'dead' 3 times, 'backup@fail=401' at 'backup' once" in error.details()


async def test_nothing_is_retried_after_the_first_token(fast_unit, provider_server):
    backup = await model_at(fast_unit.stub, provider_server.openai_url, "backup", name="backup")
    llm = await model_at(fast_unit.stub, provider_server.openai_url, "m@fail=cut,tokens=8,interval_ms=20",
                         fallback_llm_ids=[backup.llm_id])
    deltas = []

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in fast_unit.stub.GenerateReply(pb.GenerateReplyRequest(llm_id=llm.llm_id,
                                                                                 messages=[pb.ConversationMessage(
                                                                                     role="user", content="hi")])):
            deltas.append(event.delta.content)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert deltas == ["t0 ", "t1 ", "t2 ", "t3 "]
    assert [r["model"] for r in provider_server.requests] == [llm.name]


async def test_a_fallback_list_names_live_models_other_than_the_model_itself(fast_unit, provider_server):
    llm = await model_at(fast_unit.stub, provider_server.openai_url, "m")
    await expect_error(add_llm(fast_unit.stub, llm.provider_id, "n", fallback_llm_ids=["no-such-model"]),
                       grpc.StatusCode.NOT_FOUND, "LLM_NOT_FOUND")
    await expect_error(fast_unit.stub.UpdateLlm(pb.UpdateLlmRequest(
        llm_id=llm.llm_id, fallback_llm_ids=pb.FallbackLlmIds(llm_ids=[llm.llm_id]))),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FALLBACKS")
    other = await add_llm(fast_unit.stub, llm.provider_id, "other")

    updated = (await fast_unit.stub.UpdateLlm(pb.UpdateLlmRequest(
        llm_id=llm.llm_id, fallback_llm_ids=pb.FallbackLlmIds(llm_ids=[other.llm_id])))).llm
    unchanged = (await fast_unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id=llm.llm_id, name="m2"))).llm
    cleared = (await fast_unit.stub.UpdateLlm(pb.UpdateLlmRequest(
        llm_id=llm.llm_id, fallback_llm_ids=pb.FallbackLlmIds()))).llm

    assert list(updated.fallback_llm_ids) == list(unchanged.fallback_llm_ids) == [other.llm_id]
    assert list(cleared.fallback_llm_ids) == []


async def test_a_deleted_fallback_is_skipped(fast_unit, provider_server):
    gone = await model_at(fast_unit.stub, provider_server.openai_url, "gone", name="gone")
    backup = await model_at(fast_unit.stub, provider_server.openai_url, "backup", name="backup")
    llm = await model_at(fast_unit.stub, provider_server.openai_url, "m@fail=500", fallback_llm_ids=[
        gone.llm_id, backup.llm_id])
    await fast_unit.stub.DeleteLlm(pb.DeleteLlmRequest(llm_id=gone.llm_id))

    _, final = await generate(fast_unit.stub, llm.llm_id)

    assert final.llm_id == backup.llm_id


async def provider_state(stub, provider_id: str) -> pb.Provider:
    return (await stub.GetProvider(pb.GetProviderRequest(provider_id=provider_id))).provider


async def test_the_breaker_opens_after_failures_in_a_row_and_a_probe_closes_it(tmp_path, provider_server):
    settings = settings_for(f"sqlite:///{tmp_path / 'unit.db'}", retries=0, breaker_failures=2,
                            breaker_cooldown_ms=300, model_cache_ttl_ms=0)
    async with running_unit(settings) as unit:
        failing = await model_at(unit.stub, provider_server.openai_url, "m@fail=500")
        healthy = await add_llm(unit.stub, failing.provider_id, "fine")
        for _ in range(2):
            await expect_error(generate(unit.stub, failing.llm_id), grpc.StatusCode.UNAVAILABLE, "PROVIDER_ERROR")
        opened = await provider_state(unit.stub, failing.provider_id)

        started = time.monotonic()
        error = await expect_error(generate(unit.stub, healthy.llm_id), grpc.StatusCode.UNAVAILABLE,
                                   "PROVIDER_CIRCUIT_OPEN")
        assert time.monotonic() - started < 0.2 and provider_server.stats.started == 2
        assert "after 2 failures in a row (the last: PROVIDER_ERROR)" in error.details()
        assert opened.circuit_state == pb.CIRCUIT_STATE_OPEN and opened.HasField("circuit_retry_time")

        await asyncio.sleep(0.35)
        assert (await provider_state(unit.stub, failing.provider_id)).circuit_state == pb.CIRCUIT_STATE_HALF_OPEN
        await expect_error(generate(unit.stub, failing.llm_id), grpc.StatusCode.UNAVAILABLE, "PROVIDER_ERROR")
        assert (await provider_state(unit.stub, failing.provider_id)).circuit_state == pb.CIRCUIT_STATE_OPEN
        assert provider_server.stats.started == 3  # the probe failed: open again at once

        await asyncio.sleep(0.35)
        _, final = await generate(unit.stub, healthy.llm_id)
        closed = await provider_state(unit.stub, failing.provider_id)
        assert final.content and closed.circuit_state == pb.CIRCUIT_STATE_CLOSED
        assert not closed.HasField("circuit_retry_time")


async def test_an_open_breaker_sends_generations_to_the_fallback_without_waiting(tmp_path, provider_server):
    settings = settings_for(f"sqlite:///{tmp_path / 'unit.db'}", retries=0, breaker_failures=1,
                            breaker_cooldown_ms=60_000, model_cache_ttl_ms=0)
    async with running_unit(settings) as unit:
        backup = await model_at(unit.stub, provider_server.openai_url, "backup", name="backup")
        llm = await model_at(unit.stub, provider_server.openai_url, "m@fail=500", fallback_llm_ids=[backup.llm_id])
        await generate(unit.stub, llm.llm_id)  # the failure opens the primary's breaker

        _, final = await generate(unit.stub, llm.llm_id)

        assert (final.llm_id, final.attempts) == (backup.llm_id, 1)
        assert [r["model"] for r in provider_server.requests] == ["m@fail=500", "backup", "backup"]


async def test_generations_past_max_in_flight_wait_in_order_and_past_max_waiting_are_refused(fast_unit,
                                                                                              provider_server):
    provider = (await fast_unit.stub.CreateProvider(pb.CreateProviderRequest(
        name="bounded", api_endpoint=provider_server.openai_url, max_in_flight=1, max_waiting=2))).provider
    assert (provider.max_in_flight, provider.max_waiting) == (1, 2)
    llm = await add_llm(fast_unit.stub, provider.provider_id, "m@latency_ms=300")
    finished = []

    async def one(name: str):
        await generate(fast_unit.stub, llm.llm_id, messages=[pb.ConversationMessage(role="user", content=name)])
        finished.append(name)

    started = time.monotonic()
    first = asyncio.create_task(one("a"))
    await asyncio.sleep(0.1)
    waiting = [asyncio.create_task(one("b"))]
    await asyncio.sleep(0.05)
    waiting.append(asyncio.create_task(one("c")))
    await asyncio.sleep(0.05)

    error = await expect_error(generate(fast_unit.stub, llm.llm_id), grpc.StatusCode.RESOURCE_EXHAUSTED,
                               "PROVIDER_BUSY")
    assert "1 generations in flight and 2 waiting" in error.details()
    await asyncio.gather(first, *waiting)

    assert finished == ["a", "b", "c"]
    assert time.monotonic() - started >= 0.9  # one at a time: three replies of 0.3 s each
    assert provider_server.stats.started == 3


async def test_a_wait_for_a_slot_ends_with_the_generation_deadline(fast_unit, provider_server):
    provider = (await fast_unit.stub.CreateProvider(pb.CreateProviderRequest(
        name="bounded", api_endpoint=provider_server.openai_url, max_in_flight=1))).provider
    llm = await add_llm(fast_unit.stub, provider.provider_id, "m@latency_ms=1000")
    first = asyncio.create_task(generate(fast_unit.stub, llm.llm_id))
    await asyncio.sleep(0.1)

    await expect_error(generate(fast_unit.stub, llm.llm_id, timeout_ms=200), grpc.StatusCode.DEADLINE_EXCEEDED,
                       "GENERATION_TIMEOUT")
    await first
    assert provider_server.stats.started == 1


async def test_concurrency_limits_are_checked_and_changed(fast_unit, provider_server):
    await expect_error(fast_unit.stub.CreateProvider(pb.CreateProviderRequest(
        name="p", api_endpoint=provider_server.openai_url, max_in_flight=-1)),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONCURRENCY_LIMIT")
    provider = await add_provider(fast_unit.stub, name="p", url=provider_server.openai_url)
    assert (provider.max_in_flight, provider.max_waiting, provider.circuit_state) == (0, 100, pb.CIRCUIT_STATE_CLOSED)

    changed = (await fast_unit.stub.UpdateProvider(pb.UpdateProviderRequest(
        provider_id=provider.provider_id, max_in_flight=4))).provider

    assert (changed.max_in_flight, changed.max_waiting) == (4, 100)


async def test_a_generation_counts_once_against_the_breaker_however_many_tries_it_took(tmp_path, provider_server):
    settings = settings_for(f"sqlite:///{tmp_path / 'unit.db'}", retries=2, retry_backoff_ms=1, breaker_failures=2,
                            breaker_cooldown_ms=60_000, model_cache_ttl_ms=0)
    async with running_unit(settings) as unit:
        llm = await model_at(unit.stub, provider_server.openai_url, "m@fail=500")
        await expect_error(generate(unit.stub, llm.llm_id), grpc.StatusCode.UNAVAILABLE, "PROVIDER_ERROR")
        assert (await provider_state(unit.stub, llm.provider_id)).circuit_state == pb.CIRCUIT_STATE_CLOSED

        await expect_error(generate(unit.stub, llm.llm_id), grpc.StatusCode.UNAVAILABLE, "PROVIDER_ERROR")

        assert (await provider_state(unit.stub, llm.provider_id)).circuit_state == pb.CIRCUIT_STATE_OPEN
        assert provider_server.stats.started == 6


@pytest.mark.parametrize("header, seconds", [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("soon", None), ("", None),
                                             ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert retry_after(header) == seconds


async def test_a_cancelled_generation_frees_its_slot_for_the_next(fast_unit, provider_server):
    provider = (await fast_unit.stub.CreateProvider(pb.CreateProviderRequest(
        name="bounded", api_endpoint=provider_server.openai_url, max_in_flight=1, max_waiting=0))).provider
    slow = await add_llm(fast_unit.stub, provider.provider_id, "slow@tokens=50,interval_ms=100")
    quick = await add_llm(fast_unit.stub, provider.provider_id, "quick")
    call = fast_unit.stub.GenerateReply(pb.GenerateReplyRequest(llm_id=slow.llm_id, messages=[
        pb.ConversationMessage(role="user", content="hi")]))
    await call.read()  # the first token: the slot is held
    await expect_error(generate(fast_unit.stub, quick.llm_id), grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_BUSY")

    call.cancel()
    await asyncio.sleep(0.2)

    _, final = await generate(fast_unit.stub, quick.llm_id)
    assert final.content
