"""Tests of the stand-in LLM provider over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import pytest
import pytest_asyncio

from testkit import LlmServer, run_in_thread

REPO_ROOT = Path(__file__).resolve().parents[2]
HELLO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello big world"}]


@pytest_asyncio.fixture
async def server():
    async with LlmServer() as running:
        yield running


@pytest_asyncio.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


def sse_payloads(raw: bytes) -> list[str]:
    return [event.removeprefix(b"data: ").decode() for event in raw.split(b"\n\n") if event]


async def read_until_error(response: aiohttp.ClientResponse) -> tuple[bytes, BaseException | None]:
    received = b""
    try:
        async for chunk in response.content.iter_any():
            received += chunk
    except aiohttp.ClientPayloadError as exc:
        return received, exc
    return received, None


async def wait_for_stats(session: aiohttp.ClientSession, server: LlmServer, **expected: int) -> dict:
    deadline = time.monotonic() + 1.0
    while True:
        async with session.get(server.base_url + "/_testkit/stats") as response:
            stats = await response.json()
        if all(stats[key] == value for key, value in expected.items()) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_openai_non_stream_echoes_last_user_message_with_usage(server, session):
    async with session.post(server.openai_url, json={"model": "gpt-test", "messages": HELLO}) as response:
        assert response.status == 200
        body = await response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-test"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: hello big world"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


@pytest.mark.asyncio
async def test_openai_stream_sends_word_chunks_usage_then_done(server, session):
    request = {"model": "gpt-test", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    async with session.post(server.openai_url, json=request) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        payloads = sse_payloads(await response.read())
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert contents == ["echo: ", "hello ", "big ", "world"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


@pytest.mark.asyncio
async def test_openai_stream_without_include_usage_has_no_usage_chunk(server, session):
    url = server.base_url + "/chat/completions"
    async with session.post(url, json={"model": "m", "messages": HELLO, "stream": True}) as response:
        payloads = sse_payloads(await response.read())
    assert payloads[-1] == "[DONE]"
    assert all("usage" not in json.loads(p) for p in payloads[:-1])


@pytest.mark.asyncio
async def test_ollama_streams_ndjson_by_default_and_ends_with_done(server, session):
    async with session.post(server.ollama_url, json={"model": "llama3", "messages": HELLO}) as response:
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in (await response.read()).splitlines()]
    assert [line["message"]["content"] for line in lines[:-1]] == ["echo: ", "hello ", "big ", "world"]
    assert not any(line["done"] for line in lines[:-1])
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] == "stop"
    assert (last["prompt_eval_count"], last["eval_count"]) == (5, 4)


@pytest.mark.asyncio
async def test_ollama_non_stream_returns_one_done_object(server, session):
    request = {"model": "llama3", "messages": HELLO, "stream": False}
    async with session.post(server.ollama_url, json=request) as response:
        body = json.loads(await response.read())
    assert body["message"] == {"role": "assistant", "content": "echo: hello big world"}
    assert body["done"] is True and body["eval_count"] == 4


@pytest.mark.asyncio
async def test_tokens_option_comes_from_query_string(server, session):
    async with session.post(server.openai_url + "?tokens=3", json={"model": "m", "messages": HELLO}) as response:
        body = await response.json()
    assert body["choices"][0]["message"]["content"] == "t0 t1 t2 "
    assert body["usage"]["completion_tokens"] == 3


@pytest.mark.asyncio
async def test_model_name_options_override_query_string(server, session):
    request = {"model": "llama3@tokens=2,interval_ms=1", "messages": HELLO}
    async with session.post(server.ollama_url + "?tokens=7", json=request) as response:
        lines = (await response.read()).splitlines()
    assert len(lines) == 3


@pytest.mark.asyncio
async def test_server_defaults_apply_when_request_says_nothing(session):
    async with LlmServer(tokens=2) as server:
        async with session.post(server.openai_url, json={"model": "m", "messages": HELLO}) as response:
            body = await response.json()
    assert body["choices"][0]["message"]["content"] == "t0 t1 "


@pytest.mark.asyncio
async def test_interval_spaces_streamed_tokens_and_latency_delays_first_byte(server, session):
    request = {"model": "m@tokens=4,interval_ms=40,latency_ms=100", "stream": True}
    started = time.monotonic()
    async with session.post(server.openai_url, json=request) as response:
        first_byte = time.monotonic() - started
        await response.read()
    total = time.monotonic() - started
    assert first_byte >= 0.09
    assert total >= 0.09 + 3 * 0.04


@pytest.mark.asyncio
async def test_non_stream_waits_latency_plus_tokens_times_interval(server, session):
    started = time.monotonic()
    async with session.post(server.openai_url + "?latency_ms=50&interval_ms=25&tokens=4", json={"model": "m"}) as response:
        await response.read()
    assert time.monotonic() - started >= 0.14


@pytest.mark.asyncio
async def test_unknown_or_malformed_option_is_a_400(server, session):
    async with session.post(server.openai_url + "?tokenz=3", json={"model": "m"}) as response:
        assert response.status == 400
        assert "tokenz" in (await response.json())["error"]["message"]
    async with session.post(server.openai_url, json={"model": "m@tokens=many"}) as response:
        assert response.status == 400


@pytest.mark.asyncio
async def test_refuse_gives_the_client_a_connection_error(server, session):
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.post(server.openai_url + "?fail=refuse", json={"model": "m"}) as response:
            await response.read()


@pytest.mark.asyncio
async def test_stall_is_cut_by_client_timeout_and_counted_as_disconnect(server, session):
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(server.openai_url + "?fail=stall", json={"model": "m"},
                                timeout=aiohttp.ClientTimeout(total=0.3)) as response:
            await response.read()
    stats = await wait_for_stats(session, server, client_disconnected=1)
    assert stats["client_disconnected"] == 1 and stats["in_flight"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_drip_defeats_read_timeouts_until_the_overall_deadline(server, session, stream):
    received = b""
    timeout = aiohttp.ClientTimeout(total=0.5, sock_read=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(server.openai_url + "?fail=drip&drip_ms=30", timeout=timeout,
                                json={"model": "m", "stream": stream}) as response:
            assert response.status == 200
            async for chunk in response.content.iter_any():
                received += chunk
    assert len(received) >= 5
    assert received.startswith(b"data: {" if stream else b"{")


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 429, 401])
async def test_error_statuses_have_openai_error_bodies(server, session, status):
    async with session.post(server.openai_url + f"?fail={status}", json={"model": "m"}) as response:
        assert response.status == status
        assert "message" in (await response.json())["error"]
        if status == 429:
            assert response.headers["Retry-After"] == "1"


@pytest.mark.asyncio
async def test_fail_first_fails_only_the_first_requests_of_each_model_name(server, session):
    statuses = []
    for model in ["m@fail=500,fail_first=2"] * 3 + ["n@fail=500,fail_first=2"]:
        async with session.post(server.openai_url, json={"model": model, "messages": HELLO}) as response:
            statuses.append(response.status)
    assert statuses == [500, 500, 200, 500]


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 429])
async def test_retry_after_sets_the_header_of_an_error(server, session, status):
    async with session.post(server.openai_url, json={"model": f"m@fail={status},retry_after=2.5"}) as response:
        assert (response.status, response.headers["Retry-After"]) == (status, "2.5")


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False])
async def test_usage_off_reports_no_token_counts(server, session, stream):
    body = {"model": "m@usage=off", "messages": HELLO, "stream": stream, "stream_options": {"include_usage": True}}
    async with session.post(server.openai_url, json=body) as response:
        text = await response.text()
    assert "echo" in text and "prompt_tokens" not in text
    async with session.post(server.ollama_url, json={**body, "stream": False}) as response:
        assert "eval_count" not in await response.text()


@pytest.mark.asyncio
async def test_ollama_errors_are_a_plain_error_string(server, session):
    async with session.post(server.ollama_url, json={"model": "llama3@fail=500"}) as response:
        assert response.status == 500
        assert isinstance((await response.json())["error"], str)


@pytest.mark.asyncio
async def test_require_key_rejects_a_wrong_bearer_and_accepts_the_right_one(server, session):
    url = server.openai_url + "?require_key=sk-good"
    async with session.post(url, json={"model": "m"}, headers={"Authorization": "Bearer sk-bad"}) as response:
        assert response.status == 401
    async with session.post(url, json={"model": "m"}, headers={"Authorization": "Bearer sk-good"}) as response:
        assert response.status == 200


@pytest.mark.asyncio
async def test_garbage_is_a_200_that_does_not_parse(server, session):
    async with session.post(server.openai_url + "?fail=garbage", json={"model": "m"}) as response:
        assert response.status == 200
        with pytest.raises(ValueError):
            json.loads(await response.read())
    async with session.post(server.openai_url + "?fail=garbage", json={"model": "m", "stream": True}) as response:
        payloads = sse_payloads(await response.read())
    with pytest.raises(ValueError):
        json.loads(payloads[0])


@pytest.mark.asyncio
async def test_cut_openai_stream_ends_without_done(server, session):
    request = {"model": "m@tokens=10,fail=cut", "stream": True}
    async with session.post(server.openai_url, json=request) as response:
        received, error = await read_until_error(response)
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert b'"t4 "' in received and b'"t5 "' not in received
    assert b"[DONE]" not in received and b'"stop"' not in received


@pytest.mark.asyncio
async def test_cut_ollama_stream_ends_without_done_true(server, session):
    async with session.post(server.ollama_url + "?fail=cut&tokens=6&interval_ms=5", json={"model": "m"}) as response:
        received, error = await read_until_error(response)
    assert isinstance(error, aiohttp.ClientPayloadError)
    lines = [json.loads(line) for line in received.splitlines()]
    assert len(lines) == 3 and not any(line["done"] for line in lines)


@pytest.mark.asyncio
async def test_cut_non_stream_sends_half_a_json_body(server, session):
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(server.openai_url + "?fail=cut", json={"model": "m", "messages": HELLO}) as response:
            await response.read()


@pytest.mark.asyncio
async def test_requests_log_records_authorization_and_messages_and_can_be_cleared(server, session):
    await session.delete(server.base_url + "/_testkit/requests")
    headers = {"Authorization": "Bearer sk-test"}
    async with session.post(server.openai_url, json={"model": "m", "messages": HELLO}, headers=headers):
        pass
    async with session.post(server.ollama_url, json={"model": "llama3", "messages": HELLO[1:], "stream": False}):
        pass
    async with session.get(server.base_url + "/_testkit/requests") as response:
        log = await response.json()
    assert [entry["path"] for entry in log] == ["/v1/chat/completions", "/api/chat"]
    assert log[0]["authorization"] == "Bearer sk-test" and log[1]["authorization"] is None
    assert log[0]["messages"] == HELLO and log[0]["model"] == "m" and log[0]["stream"] is False
    await session.delete(server.base_url + "/_testkit/requests")
    async with session.get(server.base_url + "/_testkit/requests") as response:
        assert await response.json() == []


@pytest.mark.asyncio
async def test_client_dropping_a_stream_midway_is_counted(server, session):
    response = await session.post(server.ollama_url, json={"model": "m@tokens=50,interval_ms=20"})
    await response.content.readline()
    await response.content.readline()
    response.close()
    stats = await wait_for_stats(session, server, client_disconnected=1, in_flight=0)
    assert stats["client_disconnected"] == 1 and stats["in_flight"] == 0
    assert stats["started"] == 1 and stats["completed"] == 0


def test_run_in_thread_serves_synchronous_clients():
    with run_in_thread(tokens=2) as handle, httpx.Client() as client:
        reply = client.post(handle.openai_url, json={"model": "m", "messages": HELLO}).json()
        assert reply["choices"][0]["message"]["content"] == "t0 t1 "
        assert client.post(handle.ollama_url, json={"model": "m", "stream": False}).json()["done"] is True
        assert handle.base_url.startswith("http://127.0.0.1:")


def test_cli_prints_urls_serves_and_stops_on_sigterm():
    command = [sys.executable, "-m", "testkit.llm_server", "--port", "0", "--tokens", "2"]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            output = [process.stdout.readline() for _ in range(3)]
            openai_url = next(line.split()[-1] for line in output if "OpenAI" in line)
            reply = httpx.post(openai_url, json={"model": "m"}).json()
            assert reply["choices"][0]["message"]["content"] == "t0 t1 "
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
        finally:
            process.kill()
