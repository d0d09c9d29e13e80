"""A provider's API key through the whole suite: the key theft of issue 13 (LLM_PROVIDER_UPDATE that
moves only the endpoint, then a generation) is refused, by the typed and by the legacy client."""

import grpc
import pytest

from llmchatlinker.client import LLMChatLinkerError
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from testkit import run_in_thread


@pytest.fixture
def thief():
    """A host of the caller's own, hoping to be sent the key."""
    with run_in_thread() as server:
        yield server


def test_moving_a_keyed_provider_elsewhere_without_its_key_is_refused(client, provider_server, thief, conversation,
                                                                      testkit):
    chat = conversation(provider_server.openai_url)

    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(pb.LlmProviderUpdate(provider_id=chat.provider_id, api_endpoint=thief.openai_url))
    client.submit(chat.generate("Is my key safe?"))

    assert (raised.value.code, raised.value.reason) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                        "API_KEY_NEEDED_FOR_NEW_ENDPOINT")
    assert "supply the key again when changing the endpoint" in raised.value.message
    assert testkit(thief, "requests") == []
    (sent,) = testkit(provider_server, "requests")
    assert sent["authorization"] == f"Bearer {chat.api_key}"


def test_the_legacy_client_cannot_move_the_key_either(legacy, provider_server, thief, conversation, testkit):
    chat = conversation(provider_server.openai_url)

    moved = legacy.call("LLM_PROVIDER_UPDATE", {"provider_id": chat.provider_id, "api_endpoint": thief.openai_url})
    with_key = legacy.call("LLM_PROVIDER_UPDATE", {"provider_id": chat.provider_id, "api_endpoint": thief.openai_url,
                                                   "api_key": "sk-the-thief-s-own"})
    legacy.call("LLM_RESPONSE_GENERATE", chat.legacy_generate("Who gets this?"))

    assert (moved["status"], moved["data"]) == ("error", {}) and "supply the key again" in moved["message"]
    assert with_key["status"] == "success" and with_key["data"]["provider"]["has_api_key"] is True
    (received,) = testkit(thief, "requests")
    assert received["authorization"] == "Bearer sk-the-thief-s-own"
    assert testkit(provider_server, "requests") == []
