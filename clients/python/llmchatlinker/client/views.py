"""Flat views of a typed Result: the one resource it carries, or the list of its items.

`result.chat.chat.chat_id` (a ChatView around the Chat) and `result.users.users` (a page around
the users) read as `resource(result).chat_id` and `items(result)`.
"""

from __future__ import annotations

from google.protobuf.message import Message

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

# Payloads that are pages, each keeping its items in the field of the same name.
_PAGES = frozenset({"users", "records", "chats", "providers", "llms"})


def resource(result: pb.Result) -> Message | None:
    """The User, Chat, Provider, Llm or Message (a generated reply) a result carries; None for a
    page, a progress event or a delete."""
    payload = result.WhichOneof("payload")
    if payload == "chat":
        return result.chat.chat
    if payload == "llm_response":
        return result.llm_response.message
    if payload in ("user", "provider", "llm"):
        return getattr(result, payload)
    return None


def items(result: pb.Result) -> list[Message]:
    """The items of a page (users, records, chats, providers, llms) or a loaded chat's messages,
    oldest first; [] for any other result."""
    payload = result.WhichOneof("payload")
    if payload in _PAGES:
        return list(getattr(getattr(result, payload), payload))
    if payload == "chat":
        return list(result.chat.messages)
    return []
