"""LLMChatLinkerClient: the original client's methods and reply dicts, over gRPC or AMQP.

Code written for the original runs unchanged. Every method builds the legacy JSON instruction
(`{"type", "data"}`) and returns the legacy reply (`{"status": "success" | "error", "message",
"data"}`); both transports share the one mapping in `llmchatlinker.wire`. An instruction that fails
comes back as a reply with status "error"; a suite that cannot be reached raises LLMChatLinkerError.
Replies are `Reply` dicts: the same keys and values, plus `ok`, `code`, `reason` and `value`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from llmchatlinker.client import settings
from llmchatlinker.client.errors import DOMAIN, LLMChatLinkerError, blank_input
from llmchatlinker.client.instructions import delta_text, is_blank
from llmchatlinker.client.paging import run_whole
from llmchatlinker.client.replies import Reply
from llmchatlinker.client.typed import Client
from llmchatlinker.wire import WireError, instruction_from_json, result_to_json


class GrpcTransport:
    """The default: the orchestrator's Submit, with lists and chats fetched whole."""

    def __init__(self, address: str | None, timeout: float | None,
                 credentials: grpc.ChannelCredentials | None, api_key: str | None = None) -> None:
        self._client = Client(address, timeout=timeout, credentials=credentials, api_key=api_key)

    def call(self, body: dict) -> dict:
        try:
            instruction = instruction_from_json(body)
        except WireError as error:
            return _wire_error_reply(error)
        return _reply(run_whole(self._client.final_result, instruction))

    def stream(self, body: dict) -> Iterator[str | dict]:
        try:
            instruction = instruction_from_json(body)
        except WireError as error:
            yield _wire_error_reply(error)
            return
        with contextlib.closing(self._client.events(instruction)) as events:
            for result in events:
                if result.final:
                    yield _reply(result)
                    return
                text = delta_text(result)
                if text:
                    yield text

    def close(self) -> None:
        self._client.close()


def _reply(result) -> Reply:
    status = result.status
    return Reply(result_to_json(result), LLMChatLinkerError.from_status(status).code, status.reason, status.domain)


def _wire_error_reply(error: WireError) -> Reply:
    return Reply({"status": "error", "message": error.message, "data": {}}, grpc.StatusCode.INVALID_ARGUMENT,
                 error.reason, DOMAIN)


def _refused(error: LLMChatLinkerError) -> Reply:
    return Reply({"status": "error", "message": error.message, "data": {}}, error.code, error.reason, error.domain)


class LLMChatLinkerClient:
    """The original client's API.

    `transport` is "grpc" (the default; $LLMCHATLINKER_CLIENT_TRANSPORT) or "amqp". gRPC goes to
    `address` ($LLMCHATLINKER_ORCHESTRATOR_ADDR, default 127.0.0.1:50051). AMQP publishes to
    `queue` ($LLMCHATLINKER_QUEUE, default instruction_queue) on the broker at `amqp_url`
    ($LLMCHATLINKER_AMQP_URL, else the original's RABBITMQ_HOST/PORT/USER/PASSWORD, default
    localhost:5672 guest/guest). `timeout` is the seconds one instruction may take
    ($LLMCHATLINKER_CLIENT_TIMEOUT, default 300). `api_key` ($LLMCHATLINKER_API_KEY) is the caller
    key, sent on either transport.
    """

    def __init__(self, transport: str | None = None, *, address: str | None = None,
                 amqp_url: str | None = None, queue: str | None = None, timeout: float | None = None,
                 credentials: grpc.ChannelCredentials | None = None, api_key: str | None = None) -> None:
        self.transport = settings.transport(transport)
        if self.transport == "amqp":
            from llmchatlinker.client.amqp import AmqpTransport

            self._transport = AmqpTransport(settings.amqp_url(amqp_url), settings.queue(queue),
                                            settings.timeout(timeout), settings.api_key(api_key))
        else:
            self._transport = GrpcTransport(address, timeout, credentials, api_key)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> LLMChatLinkerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, instruction_type: str, **data: object) -> Reply:
        return self._transport.call({"type": instruction_type, "data": data})

    # Users.
    def create_user(self, username, display_name=None, profile=None):
        return self._send("USER_CREATE", username=username, display_name=display_name, profile=profile)

    def update_user(self, user_id, username=None, display_name=None, profile=None):
        return self._send("USER_UPDATE", user_id=user_id, username=username, display_name=display_name,
                          profile=profile)

    def delete_user(self, user_id):
        return self._send("USER_DELETE", user_id=user_id)

    def list_users(self):
        return self._send("USER_LIST")

    def get_user(self, username=None, user_id=None):
        return self._send("USER_GET", username=username, user_id=user_id)

    def enable_instruction_recording(self, user_id):
        return self._send("USER_INSTRUCTION_RECORDING_ENABLE", user_id=user_id)

    def disable_instruction_recording(self, user_id):
        return self._send("USER_INSTRUCTION_RECORDING_DISABLE", user_id=user_id)

    def list_user_instructions(self, user_id):
        return self._send("USER_INSTRUCTION_RECORDS_LIST", user_id=user_id)

    def delete_user_instructions(self, user_id):
        return self._send("USER_INSTRUCTION_RECORDS_DELETE", user_id=user_id)

    # Chats.
    def create_chat(self, title, user_ids):
        return self._send("CHAT_CREATE", title=title, user_ids=user_ids)

    def update_chat(self, chat_id, title):
        return self._send("CHAT_UPDATE", chat_id=chat_id, title=title)

    def delete_chat(self, chat_id):
        return self._send("CHAT_DELETE", chat_id=chat_id)

    def list_chats(self):
        return self._send("CHAT_LIST")

    def get_chat(self, chat_id):
        return self._send("CHAT_LOAD", chat_id=chat_id)

    def list_user_chats(self, user_id):
        return self._send("CHAT_LIST_BY_USER", user_id=user_id)

    # LLM providers and models.
    def add_llm_provider(self, name, api_endpoint, api_key=None):
        return self._send("LLM_PROVIDER_ADD", name=name, api_endpoint=api_endpoint, api_key=api_key)

    def update_llm_provider(self, provider_id, name=None, api_endpoint=None, api_key=None):
        return self._send("LLM_PROVIDER_UPDATE", provider_id=provider_id, name=name, api_endpoint=api_endpoint,
                          api_key=api_key)

    def delete_llm_provider(self, provider_id):
        return self._send("LLM_PROVIDER_DELETE", provider_id=provider_id)

    def list_llm_providers(self):
        return self._send("LLM_PROVIDER_LIST")

    def add_llm(self, provider_id, llm_name):
        return self._send("LLM_ADD", provider_id=provider_id, llm_name=llm_name)

    def update_llm(self, llm_id, llm_name):
        return self._send("LLM_UPDATE", llm_id=llm_id, llm_name=llm_name)

    def delete_llm(self, llm_id):
        return self._send("LLM_DELETE", llm_id=llm_id)

    def list_llms(self):
        return self._send("LLM_LIST")

    def list_llms_by_provider(self, provider_id):
        return self._send("LLM_LIST_BY_PROVIDER", provider_id=provider_id)

    # Generation.
    def generate_llm_response(self, user_id, chat_id, provider_id, llm_id, user_input):
        if is_blank(user_input):
            return _refused(blank_input())
        return self._send("LLM_RESPONSE_GENERATE", user_id=user_id, chat_id=chat_id, provider_id=provider_id,
                          llm_id=llm_id, user_input=user_input)

    def regenerate_llm_response(self, message_id):
        return self._send("LLM_RESPONSE_REGENERATE", message_id=message_id)

    def stream_llm_response(self, user_id, chat_id, provider_id, llm_id, user_input) -> Iterator[str | dict]:
        """Like generate_llm_response, but yields each token delta (a str) as it arrives, then the
        final reply dict. Over AMQP, which has no progress events, it yields the reply alone."""
        if is_blank(user_input):
            yield _refused(blank_input())
            return
        body = {"type": "LLM_RESPONSE_GENERATE",
                "data": {"user_id": user_id, "chat_id": chat_id, "provider_id": provider_id, "llm_id": llm_id,
                         "user_input": user_input}}
        yield from self._transport.stream(body)
