"""How GenerateReply reports a misbehaving provider: status, reason, and a message naming it without its
key, nor the provider's own words (its HTTP status and error code only)."""

import logging

import grpc
import pytest
from aiohttp import web

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from testkit.llm_unit import OLLAMA, OPENAI, SECRET, add_model, expect_error, fake_provider, generate
from testkit.ports import closed_port

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
TESTKIT_FAILURES = [
    ("refuse", UNAVAILABLE, "PROVIDER_UNREACHABLE"),
    ("stall", grpc.StatusCode.DEADLINE_EXCEEDED, "GENERATION_TIMEOUT"),
    ("drip", grpc.StatusCode.DEADLINE_EXCEEDED, "GENERATION_TIMEOUT"),
    ("500", UNAVAILABLE, "PROVIDER_ERROR"),
    ("429", UNAVAILABLE, "PROVIDER_RATE_LIMITED"),
    ("401", FAILED_PRECONDITION, "PROVIDER_REJECTED_KEY"),
    ("garbage", grpc.StatusCode.INTERNAL, "PROVIDER_BAD_RESPONSE"),
    ("cut", UNAVAILABLE, "PROVIDER_STREAM_CUT"),
]


async def failed_generation(stub, url, code, reason, kind=OPENAI, model="m", **fields) -> str:
    """Runs a generation that must fail; checks the message names the provider and hides the key."""
    llm = await add_model(stub, url, kind=kind, model=model, api_key=SECRET, name="Acme Cloud")
    error = await expect_error(generate(stub, llm.llm_id, **fields), code, reason)
    assert "'Acme Cloud'" in error.details()
    assert SECRET not in error.details() and SECRET not in str(error.trailing_metadata())
    return error.details()


@pytest.mark.parametrize("kind", [OPENAI, OLLAMA], ids=["openai", "ollama"])
@pytest.mark.parametrize("fail, code, reason", TESTKIT_FAILURES, ids=[f[0] for f in TESTKIT_FAILURES])
async def test_testkit_failure_maps_to_status_and_reason(sqlite_unit, provider_server, kind, fail, code, reason):
    url = provider_server.openai_url if kind == OPENAI else provider_server.ollama_url

    # drip_ms=5: a byte every 5 ms keeps the reply alive and unfinished until the deadline.
    await failed_generation(sqlite_unit.stub, url, code, reason, kind=kind, model=f"m@fail={fail},drip_ms=5",
                            timeout_ms=400)


async def test_refused_connection_is_unreachable(sqlite_unit):
    details = await failed_generation(sqlite_unit.stub, f"http://127.0.0.1:{closed_port()}/v1/chat/completions",
                                      UNAVAILABLE, "PROVIDER_UNREACHABLE")
    assert "cannot connect" in details


async def test_wrong_key_is_rejected_key(sqlite_unit, provider_server):
    await failed_generation(sqlite_unit.stub, provider_server.openai_url, FAILED_PRECONDITION,
                            "PROVIDER_REJECTED_KEY", model="m@require_key=another-key")


async def test_rejected_request_says_the_status_and_logs_neither_the_answer_nor_the_key(
        sqlite_unit, provider_server, caplog):
    # The stand-in answers 400 quoting the bad option value, which here is the key itself.
    details = await failed_generation(sqlite_unit.stub, provider_server.openai_url, FAILED_PRECONDITION,
                                      "PROVIDER_REJECTED_REQUEST", model=f"m@tokens={SECRET}")
    assert details == "provider 'Acme Cloud' rejected the request (HTTP 400 Bad Request: invalid_request_error)"
    assert "HTTP 400" in caplog.text and "option tokens" not in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("body, shown", [
    (b'{"error": {"message": "This model\'s maximum context length is 8192 tokens", '
     b'"code": "context_length_exceeded"}}', "HTTP 400 Bad Request: context_length_exceeded"),
    (b'{"error": {"message": "m", "type": "invalid_request_error", "code": "Not A Code!"}}',
     "HTTP 400 Bad Request: invalid_request_error"),
    (b'{"error": "model \'llama9\' not found"}', "HTTP 400 Bad Request"),
    (b"<html><title>Admin console</title>internal-db-password=hunter2</html>", "HTTP 400 Bad Request"),
])
async def test_an_error_answer_reaches_the_caller_as_its_status_and_code_only(sqlite_unit, caplog, body, shown):
    caplog.set_level(logging.WARNING)

    async def answer(request):
        return web.Response(body=body, status=400, content_type="application/json")

    async with fake_provider(answer) as url:
        details = await failed_generation(sqlite_unit.stub, url, FAILED_PRECONDITION, "PROVIDER_REJECTED_REQUEST")

    assert details == f"provider 'Acme Cloud' rejected the request ({shown})"
    # The log says what failed, not the provider's words: they may quote the input.
    assert "PROVIDER_REJECTED_REQUEST" in caplog.text and "hunter2" not in caplog.text
    assert "maximum context length" not in caplog.text and "llama9" not in caplog.text


@pytest.mark.parametrize("status, code, reason", [
    (403, FAILED_PRECONDITION, "PROVIDER_REJECTED_KEY"),
    (404, FAILED_PRECONDITION, "PROVIDER_REJECTED_REQUEST"),
    (422, FAILED_PRECONDITION, "PROVIDER_REJECTED_REQUEST"),
    (503, UNAVAILABLE, "PROVIDER_ERROR"),
    (302, grpc.StatusCode.INTERNAL, "PROVIDER_BAD_RESPONSE"),
])
async def test_http_status_maps_to_reason(sqlite_unit, status, code, reason):
    async def answer(request):
        return web.json_response({"error": {"message": f"no luck for {request.headers['Authorization']}"}},
                                 status=status, headers={"Location": "http://elsewhere/"})

    async with fake_provider(answer) as url:
        details = await failed_generation(sqlite_unit.stub, url, code, reason)
    assert str(status) in details and "no luck" not in details


async def test_answer_that_is_not_sse_or_json_is_a_bad_response(sqlite_unit):
    async def answer(request):
        return web.Response(text="<html>login</html>", content_type="text/html")

    async with fake_provider(answer) as url:
        details = await failed_generation(sqlite_unit.stub, url, grpc.StatusCode.INTERNAL, "PROVIDER_BAD_RESPONSE")
    assert "text/html" in details


async def test_error_event_inside_the_stream_is_a_provider_error(sqlite_unit):
    async def answer(request):
        body = (b'data: {"choices":[{"delta":{"content":"par"}}]}\n\n'
                b'data: {"error":{"message":"overloaded, try host 10.0.0.3","type":"server_error"}}\n\n')
        return web.Response(body=body, content_type="text/event-stream")

    async with fake_provider(answer) as url:
        details = await failed_generation(sqlite_unit.stub, url, UNAVAILABLE, "PROVIDER_ERROR")
    # "par" never reached the caller (the error came in the same read), so the generation was retried.
    assert details == "provider 'Acme Cloud' failed: it reported an error in its reply (server_error) (3 tries)"


async def test_stream_that_ends_without_done_is_cut_after_the_deltas_so_far(sqlite_unit):
    async def answer(request):
        body = b'data: {"choices":[{"delta":{"content":"half"}}]}\n\n'
        return web.Response(body=body, content_type="text/event-stream")

    async with fake_provider(answer) as url:
        llm = await add_model(sqlite_unit.stub, url)
        call = sqlite_unit.stub.GenerateReply(pb.GenerateReplyRequest(llm_id=llm.llm_id, messages=[
            pb.ConversationMessage(role="user", content="hi")]))
        first = await call.read()
        await expect_error(call.read(), UNAVAILABLE, "PROVIDER_STREAM_CUT")
    assert first.delta.content == "half"


@pytest.mark.parametrize("body", [b'{"choices": "none"}', b'{"choices": []}', b"[1, 2]",
                                  b'{"choices":[{"message":{"content": 7}}]}'])
async def test_json_answer_without_a_completion_is_a_bad_response(sqlite_unit, body):
    async def answer(request):
        return web.Response(body=body, content_type="application/json")

    async with fake_provider(answer) as url:
        await failed_generation(sqlite_unit.stub, url, grpc.StatusCode.INTERNAL, "PROVIDER_BAD_RESPONSE")


async def test_ollama_answer_without_done_is_cut(sqlite_unit):
    async def answer(request):
        return web.Response(body=b'{"message":{"content":"a"},"done":false}\n', content_type="application/x-ndjson")

    async with fake_provider(answer) as url:
        await failed_generation(sqlite_unit.stub, url, UNAVAILABLE, "PROVIDER_STREAM_CUT", kind=OLLAMA)
