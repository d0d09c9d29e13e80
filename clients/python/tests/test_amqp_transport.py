"""LLMChatLinkerClient(transport="amqp"): the legacy path through real RabbitMQ to the orchestrator."""

import grpc
import pytest

from llmchatlinker.client import LLMChatLinkerClient, LLMChatLinkerError
from llmchatlinker.client.amqp import connection_parameters
from testkit.backends import AMQP_URL


@pytest.fixture
def amqp_client(amqp_orchestrator, amqp_queue):
    with LLMChatLinkerClient(transport="amqp", amqp_url=AMQP_URL, queue=amqp_queue, timeout=60) as client:
        yield client


def test_amqp_create_get_and_list_users(amqp_client, unique):
    username = unique("rabbit")
    created = amqp_client.create_user(username=username, display_name="Rabbit")
    assert created["status"] == "success", created
    user = created["data"]["user"]
    assert user["display_name"] == "Rabbit"

    found = amqp_client.get_user(username=username)
    assert found["status"] == "success" and found["data"]["user"]["user_id"] == user["user_id"]
    assert user["user_id"] in {u["user_id"] for u in amqp_client.list_users()["data"]["users"]}


def test_amqp_error_reply_for_an_unknown_chat(amqp_client):
    reply = amqp_client.get_chat(chat_id="00000000-0000-4000-8000-000000000000")
    assert reply["status"] == "error" and reply["data"] == {} and reply["message"]


def test_amqp_and_grpc_see_the_same_data(amqp_client, suite, unique):
    username = unique("both")
    amqp_client.create_user(username=username)
    with LLMChatLinkerClient(address=suite.orchestrator) as grpc_client:
        assert grpc_client.get_user(username=username)["status"] == "success"


def test_amqp_stream_yields_the_reply_alone(amqp_client):
    items = list(amqp_client.stream_llm_response(user_id="u", chat_id="c", provider_id="p", llm_id="l",
                                                 user_input="hi"))
    assert len(items) == 1 and items[0]["status"] == "error"


def test_amqp_unreachable_broker_raises():
    with LLMChatLinkerClient(transport="amqp", amqp_url="amqp://guest:guest@127.0.0.1:1/%2F") as client:
        with pytest.raises(LLMChatLinkerError) as raised:
            client.list_users()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_rabbitmq_variables_of_the_original_client_are_honoured(monkeypatch):
    monkeypatch.setenv("RABBITMQ_HOST", "broker.internal")
    monkeypatch.setenv("RABBITMQ_PORT", "5673")
    monkeypatch.setenv("RABBITMQ_USER", "myuser")
    monkeypatch.setenv("RABBITMQ_PASSWORD", "mypassword")
    parameters = connection_parameters(None)
    assert (parameters.host, parameters.port) == ("broker.internal", 5673)
    assert (parameters.credentials.username, parameters.credentials.password) == ("myuser", "mypassword")
