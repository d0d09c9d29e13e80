"""Turning typed requests into Instructions, and reading Results."""

from __future__ import annotations

import logging
import uuid

from google.protobuf.message import Message

from llmchatlinker.client.errors import blank_input
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

log = logging.getLogger("llmchatlinker.client")

# Message full name -> the Instruction oneof field carrying it (UserCreate -> "user_create").
_FIELD_BY_TYPE = {
    field.message_type.full_name: field.name
    for field in pb.Instruction.DESCRIPTOR.oneofs_by_name["instruction"].fields
}


def as_instruction(request: Message) -> pb.Instruction:
    """A copy of `request` as an Instruction with an instruction_id.

    `request` is an Instruction or one of its 26 typed requests (`UserCreate(username="ada")`).
    The id, when the caller set none, is a fresh UUID: it makes the call safe to retry.
    """
    if isinstance(request, pb.Instruction):
        instruction = pb.Instruction()
        instruction.CopyFrom(request)
    else:
        field = _FIELD_BY_TYPE.get(request.DESCRIPTOR.full_name)
        if field is None:
            raise TypeError(f"not an Instruction nor one of its requests: {request.DESCRIPTOR.full_name}")
        instruction = pb.Instruction()
        getattr(instruction, field).CopyFrom(request)
    if not instruction.instruction_id:
        instruction.instruction_id = uuid.uuid4().hex
    return instruction


def refuse_blank_input(instruction: pb.Instruction) -> None:
    """Raises INVALID_ARGUMENT (INVALID_FIELD) for a generation whose user_input is empty or only
    whitespace: there is nothing to send to the model."""
    if instruction.WhichOneof("instruction") == "llm_response_generate" and is_blank(
            instruction.llm_response_generate.user_input):
        raise blank_input()


def is_blank(text: object) -> bool:
    return isinstance(text, str) and not text.strip()


def is_ok(result: pb.Result) -> bool:
    return result.status.code == 0


def delta_text(result: pb.Result) -> str | None:
    """The token delta a progress event carries; None for any other event."""
    return result.delta.content if result.WhichOneof("payload") == "delta" else None


def report_waiting(result: pb.Result) -> bool:
    """Says on the log (stderr, without logging set up) that an instruction waits out an outage,
    so that a caller who sees no tokens for a while knows why, and until when; True when it did.
    Callers say it once per instruction: it comes again at every try."""
    if result.WhichOneof("payload") != "waiting":
        return False
    waiting = result.waiting
    log.warning("instruction %s waits: %s (%s); tried again at %s UTC, gives up at %s UTC", result.instruction_id,
                waiting.message, waiting.reason, waiting.retry_time.ToDatetime().strftime("%H:%M:%S"),
                waiting.give_up_time.ToDatetime().strftime("%H:%M:%S"))
    return True
