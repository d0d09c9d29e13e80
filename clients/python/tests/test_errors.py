"""Errors a user sees without a suite behind them: each carries a code, a reason and a message."""

import json
import sys
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from llmchatlinker.client import Client, LLMChatLinkerClient, LLMChatLinkerError, Reply, items, resource
from llmchatlinker.client import settings
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from testkit.ports import free_ports


@pytest.fixture
def nowhere():
    return f"127.0.0.1:{free_ports(1)[0]}"


def test_a_suite_out_of_reach_is_named_with_its_address_and_make_run(nowhere):
    with Client(nowhere, timeout=10) as client, pytest.raises(LLMChatLinkerError) as raised:
        client.submit(pb.UserList())
    error = raised.value
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "SUITE_UNREACHABLE")
    assert error.message == f"cannot reach the suite at {nowhere}: is `make run` running?"
    assert error.details  # gRPC's own text, kept for debugging


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_blank_input_is_refused_before_it_is_sent(nowhere, blank):
    # Nothing listens at the address: INVALID_ARGUMENT rather than UNAVAILABLE shows nothing was sent.
    with Client(nowhere) as client, pytest.raises(LLMChatLinkerError) as raised:
        client.submit(pb.LlmResponseGenerate(user_id="u", chat_id="c", llm_id="l", user_input=blank))
    assert (raised.value.code, raised.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    with LLMChatLinkerClient(address=nowhere) as legacy:
        for reply in (legacy.generate_llm_response("u", "c", None, "l", blank),
                      *legacy.stream_llm_response("u", "c", None, "l", blank)):
            assert reply == {"status": "error", "message": raised.value.message, "data": {}}
            assert (reply.code, reply.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")


class _Refusing(pb_grpc.OrchestratorServiceServicer):
    def Submit(self, request, context):
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason="QUEUE_UNAVAILABLE", domain="orchestrator.llmchatlinker.dev"))
        context.abort_with_status(rpc_status.to_status(status_pb2.Status(
            code=code_pb2.UNAVAILABLE, message="the instruction queue is unavailable", details=[info])))


def test_the_reason_the_suite_attaches_to_a_failed_call_is_kept():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_OrchestratorServiceServicer_to_server(_Refusing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with Client(f"127.0.0.1:{port}", timeout=10) as client, pytest.raises(LLMChatLinkerError) as raised:
            client.submit(pb.UserList())
    finally:
        server.stop(None)
    error = raised.value
    assert (error.code, error.reason, error.domain) == (
        grpc.StatusCode.UNAVAILABLE, "QUEUE_UNAVAILABLE", "orchestrator.llmchatlinker.dev")
    assert error.message == "the instruction queue is unavailable"


def test_a_reply_is_still_the_legacy_dict_with_its_value_in_reach():
    body = {"status": "success", "message": "User created.", "data": {"user": {"user_id": "u1"}}}
    reply = Reply(body)
    assert reply == body and json.loads(json.dumps(reply)) == body and isinstance(reply, dict)
    assert reply.ok and reply.value == {"user_id": "u1"} and reply.raise_for_status() is reply
    assert Reply({"status": "success", "message": "User deleted.", "data": {}}).value is None

    failed = Reply({"status": "error", "message": "user 'x' not found", "data": {}},
                   grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", "user.llmchatlinker.dev")
    assert not failed.ok
    with pytest.raises(LLMChatLinkerError) as raised:
        failed.value
    assert (raised.value.code, raised.value.reason, raised.value.message) == (
        grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", "user 'x' not found")


def test_resource_and_items_flatten_the_nested_results():
    chat = pb.Result()
    chat.chat.chat.chat_id = "c1"
    chat.chat.messages.add(message_id="m1")
    assert resource(chat).chat_id == "c1" and [m.message_id for m in items(chat)] == ["m1"]
    users = pb.Result()
    users.users.users.add(user_id="u1")
    users.users.users.add(user_id="u2")
    assert [u.user_id for u in items(users)] == ["u1", "u2"] and resource(users) is None
    reply = pb.Result()
    reply.llm_response.message.content = "hi"
    assert resource(reply).content == "hi" and items(reply) == []


def test_the_amqp_hint_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pika", None)  # as if pika were not installed
    with pytest.raises(ImportError) as raised:
        LLMChatLinkerClient(transport="amqp")
    assert settings.AMQP_INSTALL_HINT in str(raised.value)
    assert "llmchatlinker[amqp]" not in str(raised.value)


def test_an_instruction_waiting_out_an_outage_is_said_on_the_log(caplog):
    from llmchatlinker.client.instructions import report_waiting
    from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

    event = pb.Result(instruction_id="i-1")
    event.waiting.message, event.waiting.reason = "provider 'p' is unreachable", "PROVIDER_UNREACHABLE"
    event.waiting.retry_time.FromSeconds(3_600)
    event.waiting.give_up_time.FromSeconds(3_720)
    assert report_waiting(event)
    assert not report_waiting(pb.Result(instruction_id="i-2"))  # not waiting: nothing said
    [record] = caplog.records
    assert record.levelname == "WARNING" and record.name == "llmchatlinker.client"
    assert "i-1 waits: provider 'p' is unreachable (PROVIDER_UNREACHABLE)" in record.getMessage()
    assert "01:00:00 UTC" in record.getMessage() and "01:02:00 UTC" in record.getMessage()
