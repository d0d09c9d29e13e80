"""Generation through the whole suite: both provider kinds, a provider answering plain JSON, and
every way a provider can fail, through Submit (the typed client) and the legacy AMQP JSON path."""

import http.server
import json
import threading
import uuid

import grpc
import pytest

from llmchatlinker.client import LLMChatLinkerError
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from testkit import run_in_thread
from testkit.ports import closed_port

OPENAI, OLLAMA = llm_pb2.PROVIDER_KIND_OPENAI, llm_pb2.PROVIDER_KIND_OLLAMA
KINDS = pytest.mark.parametrize("kind", [OPENAI, OLLAMA], ids=["openai", "ollama"])


class PlainJsonProvider(http.server.ThreadingHTTPServer):
    """An OpenAI-compatible provider that ignores `stream: true` and answers one whole JSON body,
    as the MLModelScope agent's /api/chat does. POST /cut promises the body and sends half of it."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _PlainJsonHandler)

    def url(self, path: str = "/api/chat") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _PlainJsonHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({
            "id": "plain", "object": "chat.completion", "model": request["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"whole: {request['messages'][-1]['content']}"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path == "/cut" else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def plain_json_provider():
    server = PlainJsonProvider()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def endpoint(server, kind) -> str:
    return server.openai_url if kind == OPENAI else server.ollama_url


def deltas_and_final(client, instruction) -> tuple[list[str], pb.Result]:
    deltas, final = [], None
    for result in client.stream(instruction):
        if result.WhichOneof("payload") == "delta":
            deltas.append(result.delta.content)
        if result.final:
            final = result
    return deltas, final


# ---- answers ----------------------------------------------------------------------------------


@KINDS
def test_a_streamed_reply_reaches_the_caller_and_is_stored_as_one_turn(client, provider_server, conversation,
                                                                       chat_messages, testkit, kind):
    chat = conversation(endpoint(provider_server, kind), model="echo@tokens=6", kind=kind)

    deltas, final = deltas_and_final(client, chat.generate("Hello there"))

    reply = final.llm_response
    assert reply.message.content == "t0 t1 t2 t3 t4 t5 " == "".join(deltas)
    assert reply.usage.completion_tokens == 6
    assert [(role, content) for role, content, _ in chat_messages(chat.chat_id)] == [
        ("user", "Hello there"), ("assistant", "t0 t1 t2 t3 t4 t5 ")]
    (request,) = testkit(provider_server, "requests")
    assert request["stream"] is True
    assert request["messages"] == [{"role": "user", "content": "Hello there"}]
    assert request["authorization"] == f"Bearer {chat.api_key}"


def test_a_provider_answering_one_whole_json_body_is_understood(client, plain_json_provider, conversation,
                                                                chat_messages):
    chat = conversation(plain_json_provider.url(), model="agent")

    reply = client.submit(chat.generate("What is 2 + 2?")).llm_response

    assert reply.message.content == "whole: What is 2 + 2?"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 2)
    assert [content for _, content, _ in chat_messages(chat.chat_id)] == ["What is 2 + 2?", "whole: What is 2 + 2?"]


def test_the_legacy_json_client_chats_through_rabbitmq(legacy, provider_server, unique, chat_messages):
    """Everything the original way: a provider added with name and endpoint only is OpenAI-compatible."""
    user = legacy.call("USER_CREATE", {"username": unique("legacy")})["data"]["user"]
    chat = legacy.call("CHAT_CREATE", {"title": "legacy", "user_ids": [user["user_id"]]})["data"]["chat"]
    provider = legacy.call("LLM_PROVIDER_ADD", {"name": unique("legacy"),
                                                "api_endpoint": provider_server.openai_url})["data"]["provider"]
    llm = legacy.call("LLM_ADD", {"provider_id": provider["provider_id"], "llm_name": "echo"})["data"]["llm"]

    reply = legacy.call("LLM_RESPONSE_GENERATE", {
        "user_id": user["user_id"], "chat_id": chat["chat_id"], "provider_id": provider["provider_id"],
        "llm_id": llm["llm_id"], "user_input": "Hi from 2023"})

    assert reply["status"] == "success", reply
    assert reply["data"]["llm_response"]["content"] == "echo: Hi from 2023"
    assert reply["data"]["llm_response"]["role"] == "assistant"
    assert [content for _, content, _ in chat_messages(chat["chat_id"])] == ["Hi from 2023", "echo: Hi from 2023"]


# ---- failures ---------------------------------------------------------------------------------

UNAVAILABLE, DEADLINE = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED
PRECONDITION, INTERNAL = grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INTERNAL

# (name, model of the stand-in LLM, expected code, expected reason). The ones that only a deadline
# ends go through the replicas with the short deadline (`short_deadline` in conftest.py).
FAILURES = [
    ("refuse", "m@fail=refuse", UNAVAILABLE, "PROVIDER_UNREACHABLE"),
    ("stall", "m@fail=stall", DEADLINE, "GENERATION_TIMEOUT"),
    ("drip", "m@fail=drip,drip_ms=50", DEADLINE, "GENERATION_TIMEOUT"),
    ("500", "m@fail=500", UNAVAILABLE, "PROVIDER_ERROR"),
    ("429", "m@fail=429", UNAVAILABLE, "PROVIDER_RATE_LIMITED"),
    ("401", "m@fail=401", PRECONDITION, "PROVIDER_REJECTED_KEY"),
    ("wrong-key", "m@require_key=the-right-key", PRECONDITION, "PROVIDER_REJECTED_KEY"),
    ("garbage", "m@fail=garbage", INTERNAL, "PROVIDER_BAD_RESPONSE"),
    ("cut", "m@fail=cut,tokens=20", UNAVAILABLE, "PROVIDER_STREAM_CUT"),
]
ENDED_BY_THE_DEADLINE = {"stall", "drip"}
# A provider out of reach is an outage: the instruction goes back on the queue and asks again until
# the outage wait (1.5 s in this suite) is over; every other failure is the answer at once.
WAITED_OUT = {"refuse"}
# Failures before the first token that llm_unit retries (twice, by default) before it answers.
RETRIED = {"500", "429"}


@KINDS
@pytest.mark.parametrize("name, model, code, reason", FAILURES, ids=[f[0] for f in FAILURES])
def test_a_failing_provider_gives_a_clear_error_and_leaves_the_chat_as_it_was(
        request, provider_server, conversation, chat_messages, testkit, kind, name, model, code, reason):
    front_door = request.getfixturevalue("short_client" if name in ENDED_BY_THE_DEADLINE else "client")
    chat = conversation(endpoint(provider_server, kind), model=model, kind=kind)

    with pytest.raises(LLMChatLinkerError) as raised:
        front_door.submit(chat.generate("Will this work?"))

    error = raised.value
    if name in WAITED_OUT and error.reason == "PROVIDER_CIRCUIT_OPEN":  # its breaker opened while waited out
        reason = error.reason
    assert (error.code, error.reason) == (code, reason), error
    assert repr(chat.provider_name) in error.message
    assert chat.api_key not in error.message
    asked = len(testkit(provider_server, "requests"))
    # Asked again while waited out; three times when retried; else once.
    assert asked > 1 if name in WAITED_OUT else asked == (3 if name in RETRIED else 1)
    assert chat_messages(chat.chat_id) == []


def test_a_provider_that_is_down_is_unavailable(client, conversation, chat_messages):
    chat = conversation(f"http://127.0.0.1:{closed_port()}/v1/chat/completions")

    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(chat.generate("Anyone there?"))

    # Unreachable; or skipped, when its breaker opened (five failed tries) while it was waited out.
    assert raised.value.code == UNAVAILABLE
    assert raised.value.reason in ("PROVIDER_UNREACHABLE", "PROVIDER_CIRCUIT_OPEN")
    assert repr(chat.provider_name) in raised.value.message
    assert chat_messages(chat.chat_id) == []


def test_an_attempt_that_failed_for_now_is_not_kept_so_the_same_instruction_runs_again(
        client, conversation, chat_messages, testkit):
    port = closed_port()
    chat = conversation(f"http://127.0.0.1:{port}/v1/chat/completions")
    instruction = pb.Instruction(instruction_id=f"retried-{uuid.uuid4().hex}",
                                 llm_response_generate=chat.generate("Anyone there now?"))
    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(instruction)
    assert raised.value.code == UNAVAILABLE and chat_messages(chat.chat_id) == []

    with run_in_thread(port=port) as provider:  # the provider is back
        again = client.submit(instruction)  # the same id: run again, not answered with the failure
        assert again.llm_response.message.content == "echo: Anyone there now?"
        assert len(testkit(provider, "requests")) == 1
    assert [content for _, content, _ in chat_messages(chat.chat_id)] == ["Anyone there now?", "echo: Anyone there now?"]


def test_a_final_failure_is_kept_so_the_same_instruction_is_answered_without_running(
        client, provider_server, conversation, chat_messages, testkit):
    chat = conversation(provider_server.openai_url, model="m@fail=401")
    instruction = pb.Instruction(instruction_id=f"refused-{uuid.uuid4().hex}",
                                 llm_response_generate=chat.generate("Let me in"))
    for _ in range(2):
        with pytest.raises(LLMChatLinkerError) as raised:
            client.submit(instruction)
        assert raised.value.reason == "PROVIDER_REJECTED_KEY"
    assert len(testkit(provider_server, "requests")) == 1  # the second answer came from the ledger


def test_a_plain_json_body_cut_short_is_a_cut_stream(client, plain_json_provider, conversation, chat_messages):
    chat = conversation(plain_json_provider.url("/cut"))

    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(chat.generate("Half an answer?"))

    assert (raised.value.code, raised.value.reason) == (UNAVAILABLE, "PROVIDER_STREAM_CUT")
    assert chat_messages(chat.chat_id) == []


def test_every_failure_gives_the_legacy_client_one_error_reply(legacy, short_legacy, provider_server, conversation,
                                                               chat_messages):
    """All at once, as independent legacy callers would send them."""
    chats = {name: conversation(provider_server.openai_url, model=model) for name, model, _, _ in FAILURES}
    callers = {name: short_legacy if name in ENDED_BY_THE_DEADLINE else legacy for name in chats}

    sent = {name: callers[name].send("LLM_RESPONSE_GENERATE", chat.legacy_generate("Will this work?"))
            for name, chat in chats.items()}
    for caller in (legacy, short_legacy):
        caller.wait([sent[name] for name in chats if callers[name] is caller])

    for name, chat in chats.items():
        (reply,) = callers[name].replies[sent[name]]
        assert (reply["status"], reply["data"]) == ("error", {}), (name, reply)
        assert repr(chat.provider_name) in reply["message"], (name, reply)
        assert chat.api_key not in reply["message"], name
        assert chat_messages(chat.chat_id) == [], name
