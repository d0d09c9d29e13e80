"""A provider reply's size is capped (LLMCHATLINKER_LLM_UNIT_MAX_REPLY_BYTES): past it the caller gets
RESOURCE_EXHAUSTED naming the limit, the provider is hung up on, and other generations go on."""

import asyncio
import time

import grpc
import pytest
from aiohttp import web

from services.llm_unit.config import DEFAULT_MAX_REPLY_BYTES, Settings
from testkit.llm_unit import OLLAMA, OPENAI, add_llm, add_model, expect_error, fake_provider, generate, running_unit, \
    settings_for, wait_for_stat

LIMIT = 64 * 1024
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture
async def capped_unit(tmp_path):
    async with running_unit(settings_for(f"sqlite:///{tmp_path / 'unit.db'}", max_reply_bytes=LIMIT)) as unit:
        yield unit


@pytest.mark.parametrize("kind", [OPENAI, OLLAMA], ids=["openai", "ollama"])
async def test_a_reply_without_end_is_cut_at_the_limit_and_others_go_on(capped_unit, provider_server, kind):
    url = provider_server.openai_url if kind == OPENAI else provider_server.ollama_url
    flood = await add_model(capped_unit.stub, url, kind=kind, model="m@fail=flood")
    normal = await add_llm(capped_unit.stub, flood.provider_id, "m@tokens=50")
    started = time.monotonic()

    results = await asyncio.gather(
        expect_error(generate(capped_unit.stub, flood.llm_id, timeout_ms=30_000), EXHAUSTED, "PROVIDER_REPLY_TOO_LARGE"),
        *(generate(capped_unit.stub, normal.llm_id) for _ in range(5)))

    assert time.monotonic() - started < 10  # cut at the limit, not at the 30 s deadline
    assert f"{LIMIT:,} bytes" in results[0].details()
    assert "LLMCHATLINKER_LLM_UNIT_MAX_REPLY_BYTES" in results[0].details()
    assert all(final.usage.completion_tokens == 50 for _deltas, final in results[1:])
    stats = await wait_for_stat(provider_server, "client_disconnected", 1)
    assert stats["client_disconnected"] == 1  # the unit hung up on the flood


async def test_a_whole_json_answer_over_the_limit_is_refused(capped_unit):
    async def answer(request):
        content = "x" * (2 * LIMIT)
        return web.json_response({"choices": [{"message": {"content": content}, "finish_reason": "stop"}]})

    async with fake_provider(answer) as url:
        llm = await add_model(capped_unit.stub, url)
        await expect_error(generate(capped_unit.stub, llm.llm_id), EXHAUSTED, "PROVIDER_REPLY_TOO_LARGE")


async def test_a_reply_just_under_the_limit_is_whole(capped_unit):
    async def answer(request):
        body = b'{"choices": [{"message": {"content": "' + b"y" * (LIMIT - 200) + b'"}, "finish_reason": "stop"}]}'
        return web.Response(body=body, content_type="application/json")

    async with fake_provider(answer) as url:
        llm = await add_model(capped_unit.stub, url)
        deltas, final = await generate(capped_unit.stub, llm.llm_id)

    assert len(final.content) == LIMIT - 200


def test_the_limit_setting_has_a_sane_default_and_bounds(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_DATABASE_URL", "sqlite:////tmp/x.db")
    assert Settings.from_env().max_reply_bytes == DEFAULT_MAX_REPLY_BYTES == 32 * 2**20
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_MAX_REPLY_BYTES", "1000000")
    assert Settings.from_env().max_reply_bytes == 1_000_000
    for bad in ("12", "lots", str(64 * 2**20)):
        monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_MAX_REPLY_BYTES", bad)
        with pytest.raises(RuntimeError, match="LLMCHATLINKER_LLM_UNIT_MAX_REPLY_BYTES"):
            Settings.from_env()
