"""Whole lists for the legacy client: the original returned every item, the suite returns pages."""

from __future__ import annotations

from collections.abc import Callable

from llmchatlinker.client.instructions import is_ok
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

# The largest page the suite serves; asking for it keeps most lists to one round trip.
MAX_PAGE_SIZE = 1000
# A server handing out tokens forever must not hang the client.
MAX_PAGES = 10_000

# Result payloads that are pages; each keeps its items in the field of the same name.
LIST_PAYLOADS = frozenset({"users", "records", "chats", "providers", "llms"})

Run = Callable[[pb.Instruction], pb.Result]


def run_whole(run: Run, instruction: pb.Instruction) -> pb.Result:
    """Runs `instruction` and, for a list or CHAT_LOAD, follows its page tokens to the end.

    The result is the first page's result with every item in it: lists oldest first, a chat's
    messages oldest first. An error on a later page is returned as the result.
    """
    request = getattr(instruction, instruction.WhichOneof("instruction"))
    fields = request.DESCRIPTOR.fields_by_name
    for size_field in ("page_size", "message_page_size"):
        if size_field in fields and not getattr(request, size_field):
            setattr(request, size_field, MAX_PAGE_SIZE)

    result = run(instruction)
    payload = result.WhichOneof("payload") if is_ok(result) else None
    if payload in LIST_PAYLOADS:
        return _append_later_pages(run, instruction, result, payload)
    if payload == "chat":
        return _prepend_older_messages(run, instruction, result)
    return result


def _next(instruction: pb.Instruction, token_field: str, token: str) -> pb.Instruction:
    following = pb.Instruction()
    following.CopyFrom(instruction)
    following.instruction_id = ""  # each page is an instruction of its own
    setattr(getattr(following, following.WhichOneof("instruction")), token_field, token)
    return following


def _append_later_pages(run: Run, instruction: pb.Instruction, result: pb.Result, payload: str) -> pb.Result:
    page = getattr(result, payload)
    for _ in range(MAX_PAGES):
        if not page.next_page_token:
            break
        later = run(_next(instruction, "page_token", page.next_page_token))
        if not is_ok(later):
            return later
        later_page = getattr(later, payload)
        getattr(page, payload).extend(getattr(later_page, payload))
        page.next_page_token = later_page.next_page_token
    return result


def _prepend_older_messages(run: Run, instruction: pb.Instruction, result: pb.Result) -> pb.Result:
    view = result.chat
    for _ in range(MAX_PAGES):
        if not view.next_message_page_token:
            break
        older = run(_next(instruction, "message_page_token", view.next_message_page_token))
        if not is_ok(older):
            return older
        messages = list(older.chat.messages) + list(view.messages)
        del view.messages[:]
        view.messages.extend(messages)
        view.next_message_page_token = older.chat.next_message_page_token
    return result
