"""Instruction recording: each instruction naming a user whose recording is on becomes a record in the db unit."""

import asyncio
import logging

import grpc

from llmchatlinker.db.v1 import db_service_pb2 as db_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import json_type_of
from services.orchestrator.instructions.catalog import UserChange, chat_id_of, entry_of, user_ids_of
from services.orchestrator.instructions.run import request_id
from services.orchestrator.units.gateways import Units

log = logging.getLogger(__name__)

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_OK = grpc.StatusCode.OK.value[0]


async def record_instruction(units: Units, instruction: orchestrator_pb2.Instruction,
                             result: orchestrator_pb2.Result, key: str = "") -> None:
    """Records the instruction for each user it names whose recording is on; never raises.

    Unknown or deleted users are skipped. Each record carries the request id
    "{key}:record:{user_id}" (`key`: the instruction id as its caller's own, keys.scoped), so
    recording an instruction again adds nothing.
    """
    entry = entry_of(instruction)
    user_ids = user_ids_of(instruction)
    if entry is None or not user_ids:
        return
    json_type = json_type_of(instruction)
    try:
        _note_changes(units, entry.user_change, user_ids, result)
        if not entry.recorded:
            return
        recorded = await units.users.recording_on(user_ids)
        if not recorded:
            return
        chat_id = chat_id_of(instruction) or _chat_of(result)
        outcome = _CODE_NAMES.get(result.status.code, str(result.status.code))
        await asyncio.gather(*(units.records.CreateRecord(db_pb2.CreateRecordRequest(
            request_id=request_id(key or instruction.instruction_id, f"record:{user_id}"),
            user_id=user_id,
            chat_id=chat_id,
            instruction=json_type,
            instruction_id=instruction.instruction_id,
            outcome=outcome,
        )) for user_id in recorded))
    except Exception:  # noqa: BLE001 - a lost record must not fail the instruction
        log.exception("could not record instruction %s (%s)", instruction.instruction_id, json_type)


def _note_changes(units: Units, change: UserChange, user_ids: list[str], result: orchestrator_pb2.Result) -> None:
    """Keeps the recording flags of the users this instruction changed in step with the change."""
    ok = result.status.code == _OK
    if change is UserChange.UPDATES:
        user = result.user if ok and result.WhichOneof("payload") == "user" else None
        for user_id in user_ids:
            units.users.flags.changed(user_id, user.record_instructions if user and user.user_id == user_id else None)
    elif change is UserChange.DELETES:
        for user_id in user_ids:
            units.users.flags.changed(user_id, False if ok else None)  # a deleted user is never recorded


def _chat_of(result: orchestrator_pb2.Result) -> str:
    """The chat a result tells of, for instructions that name none (CHAT_CREATE, REGENERATE)."""
    payload = result.WhichOneof("payload")
    if payload == "chat":
        return result.chat.chat.chat_id
    if payload == "llm_response":
        return result.llm_response.message.chat_id
    return ""
