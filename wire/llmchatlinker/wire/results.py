"""Final `Result` messages to the legacy JSON reply `{"status", "message", "data"}`.

The objects carry exactly the keys the legacy format defines (plus `has_api_key` and `kind` on
providers, never the key itself); timestamps are ISO 8601 strings in UTC, unset ones null.
"""

import datetime

from google.protobuf import timestamp_pb2

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.db.v1 import db_service_pb2 as db_pb2
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from llmchatlinker.wire.names import json_type_named

SUCCESS_MESSAGES = {
    "USER_CREATE": "User created.",
    "USER_UPDATE": "User updated.",
    "USER_DELETE": "User deleted.",
    "USER_LIST": "Users listed.",
    "USER_GET": "User found.",
    "USER_INSTRUCTION_RECORDING_ENABLE": "Instruction recording enabled.",
    "USER_INSTRUCTION_RECORDING_DISABLE": "Instruction recording disabled.",
    "USER_INSTRUCTION_RECORDS_DELETE": "Instruction records deleted.",
    "USER_INSTRUCTION_RECORDS_LIST": "Instruction records listed.",
    "CHAT_CREATE": "Chat created.",
    "CHAT_UPDATE": "Chat updated.",
    "CHAT_DELETE": "Chat deleted.",
    "CHAT_LOAD": "Chat loaded.",
    "CHAT_LIST": "Chats listed.",
    "CHAT_LIST_BY_USER": "Chats listed.",
    "LLM_RESPONSE_GENERATE": "LLM response generated.",
    "LLM_RESPONSE_REGENERATE": "LLM response regenerated.",
    "LLM_PROVIDER_ADD": "LLM provider added.",
    "LLM_PROVIDER_UPDATE": "LLM provider updated.",
    "LLM_PROVIDER_DELETE": "LLM provider deleted.",
    "LLM_PROVIDER_LIST": "LLM providers listed.",
    "LLM_ADD": "LLM added.",
    "LLM_UPDATE": "LLM updated.",
    "LLM_DELETE": "LLM deleted.",
    "LLM_LIST": "LLMs listed.",
    "LLM_LIST_BY_PROVIDER": "LLMs listed.",
    "USAGE_LIST": "Usage listed.",
    "USER_LIMITS_SET": "User limits set.",
    "USER_LIMITS_GET": "User limits found.",
}

# Types whose legacy reply data is {} whatever the typed result carries.
EMPTY_DATA = frozenset({
    "USER_DELETE", "USER_INSTRUCTION_RECORDING_ENABLE", "USER_INSTRUCTION_RECORDING_DISABLE",
    "USER_INSTRUCTION_RECORDS_DELETE", "CHAT_DELETE", "LLM_PROVIDER_DELETE", "LLM_DELETE",
})

_ROLES = {chat_pb2.MESSAGE_ROLE_USER: "user", chat_pb2.MESSAGE_ROLE_ASSISTANT: "assistant",
          chat_pb2.MESSAGE_ROLE_SYSTEM: "system"}
_KINDS = {llm_pb2.PROVIDER_KIND_OPENAI: "openai", llm_pb2.PROVIDER_KIND_OLLAMA: "ollama"}


def result_to_json(result: orchestrator_pb2.Result) -> dict:
    """The legacy reply to a final result: success with data, or error with `data` {}."""
    if result.status.code:
        return {"status": "error", "message": _error_message(result.status), "data": {}}
    json_type = json_type_named(result.instruction_type)
    return {"status": "success", "message": SUCCESS_MESSAGES.get(json_type, "Done."), "data": _data(result, json_type)}


def _error_message(status: orchestrator_pb2.Status) -> str:
    if status.message:
        return status.message
    return f"The instruction failed ({status.reason or f'status code {status.code}'})."


def _data(result: orchestrator_pb2.Result, json_type: str) -> dict:
    payload = result.WhichOneof("payload")
    if json_type in EMPTY_DATA or payload is None:
        return {}
    value = getattr(result, payload)
    if payload == "user":
        return {"user": user_json(value)}
    if payload == "users":
        return {"users": [user_json(user) for user in value.users]}
    if payload == "records":
        return {"records": [record_json(record) for record in value.records]}
    if payload == "chat":
        return {"chat": chat_view_json(value)}
    if payload == "chats":
        return {"chats": [chat_json(chat) for chat in value.chats]}
    if payload == "provider":
        return {"provider": provider_json(value)}
    if payload == "providers":
        return {"providers": [provider_json(provider) for provider in value.providers]}
    if payload == "llm":
        return {"llm": llm_json(value)}
    if payload == "llms":
        return {"llms": [llm_json(llm) for llm in value.llms]}
    if payload == "llm_response":
        return {"llm_response": message_json(value.message)}
    if payload == "user_limits":
        return {"user_limits": {"user_id": value.user_id, "requests_per_minute": value.requests_per_minute,
                                "tokens_per_day": value.tokens_per_day, "tokens_per_month": value.tokens_per_month}}
    if payload == "usage":
        return {"usage": [usage_json(summary) for summary in value.summaries],
                "next_page_token": value.next_page_token or None}
    # Progress events have no legacy form; they are given a plain one for completeness.
    if payload == "delta":
        return {"delta": value.content}
    if payload == "accepted":
        return {"accepted_at": iso(value.accept_time)}
    raise AssertionError(f"no JSON form for result payload {payload!r}")


def iso(stamp: timestamp_pb2.Timestamp) -> str | None:
    """ISO 8601 in UTC ("2024-05-01T12:00:00.123456+00:00"); None for an unset timestamp."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime(tzinfo=datetime.timezone.utc).isoformat()


def user_json(user: user_pb2.User) -> dict:
    return {
        "user_id": user.user_id,
        "username": user.username,
        "display_name": user.display_name,
        "profile": user.profile,
        "record_instructions": user.record_instructions,
        "created_at": iso(user.create_time),
        "updated_at": iso(user.update_time),
    }


def _member_stub(user_id: str) -> dict:
    # Chat pages carry member ids only; the other fields of a member are unknown there.
    return {"user_id": user_id, "username": None, "display_name": None, "profile": None,
            "record_instructions": None, "created_at": None, "updated_at": None}


def chat_json(chat: chat_pb2.Chat, users: list[dict] | None = None, messages: list[dict] | None = None) -> dict:
    """A chat; without `users`, its members appear as user objects that only know their id."""
    return {
        "chat_id": chat.chat_id,
        "title": chat.title,
        "users": users if users is not None else [_member_stub(user_id) for user_id in chat.user_ids],
        "messages": messages if messages is not None else [],
        "created_at": iso(chat.create_time),
        "updated_at": iso(chat.update_time),
    }


def chat_view_json(view: orchestrator_pb2.ChatView) -> dict:
    return chat_json(view.chat, [user_json(user) for user in view.users],
                     [message_json(message) for message in view.messages])


def message_json(message: chat_pb2.Message) -> dict:
    return {
        "message_id": message.message_id,
        "chat_id": message.chat_id,
        "user_id": message.user_id or None,
        "llm_id": message.llm_id or None,
        "content": message.content,
        "role": _ROLES.get(message.role),
        "created_at": iso(message.create_time),
        "updated_at": iso(message.update_time),
    }


def usage_json(summary: llm_pb2.UsageSummary) -> dict:
    return {
        "key": summary.key,
        "generations": summary.generations,
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "estimated_generations": summary.estimated_generations,
        "mean_time_to_first_token_ms": summary.mean_time_to_first_token_ms,
        "duration_ms": summary.duration_ms,
    }


def provider_json(provider: llm_pb2.Provider) -> dict:
    return {
        "provider_id": provider.provider_id,
        "name": provider.name,
        "api_endpoint": provider.api_endpoint,
        "has_api_key": provider.has_api_key,
        "kind": _KINDS.get(provider.kind),
        "created_at": iso(provider.create_time),
        "updated_at": iso(provider.update_time),
    }


def llm_json(llm: llm_pb2.Llm) -> dict:
    return {
        "llm_id": llm.llm_id,
        "name": llm.name,
        "provider_id": llm.provider_id,
        "created_at": iso(llm.create_time),
        "updated_at": iso(llm.update_time),
    }


def record_json(record: db_pb2.Record) -> dict:
    return {
        "record_id": record.record_id,
        "user_id": record.user_id,
        "chat_id": record.chat_id or None,
        "instruction": record.instruction,
        "created_at": iso(record.create_time),
        "updated_at": iso(record.update_time),
    }
