"""Instruction recording: each instruction naming a user whose recording is on becomes a record in the db unit."""

import asyncio
import logging

import grpc

from llmchatlinker.db.v1 import db_service_pb2 as db_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import json_type_of
from services.orchestrator import facts
from services.orchestrator.channels import UNARY_DEADLINE_S, UnitChannels
from services.orchestrator.control_run import live_users

log = logging.getLogger(__name__)

# Reading or clearing the record log is not itself recorded: listing would grow the list, and
# deleting would leave a record behind.
UNRECORDED = frozenset({"USER_INSTRUCTION_RECORDS_LIST", "USER_INSTRUCTION_RECORDS_DELETE"})

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


async def record_instruction(channels: UnitChannels, instruction: orchestrator_pb2.Instruction,
                             result: orchestrator_pb2.Result) -> None:
    """Records the instruction for each user it names whose recording is on; never raises.

    Unknown or deleted users are skipped. Each record carries the request id
    "{instruction_id}:record:{user_id}", so recording an instruction again adds nothing.
    """
    json_type = json_type_of(instruction)
    user_ids = facts.user_ids_of(instruction)
    if not user_ids or json_type in UNRECORDED:
        return
    try:
        users = await live_users(channels, user_ids)
        recorded = [user for user in users if user.record_instructions]
        chat_id = facts.chat_id_of(instruction) or _chat_of(result)
        outcome = _CODE_NAMES.get(result.status.code, str(result.status.code))
        await asyncio.gather(*(channels.records.CreateRecord(db_pb2.CreateRecordRequest(
            request_id=facts.request_id(instruction.instruction_id, f"record:{user.user_id}"),
            user_id=user.user_id,
            chat_id=chat_id,
            instruction=json_type,
            instruction_id=instruction.instruction_id,
            outcome=outcome,
        ), timeout=UNARY_DEADLINE_S) for user in recorded))
    except Exception:  # noqa: BLE001 - a lost record must not fail the instruction
        log.exception("could not record instruction %s (%s)", instruction.instruction_id, json_type)


def _chat_of(result: orchestrator_pb2.Result) -> str:
    """The chat a result tells of, for instructions that name none (CHAT_CREATE, REGENERATE)."""
    payload = result.WhichOneof("payload")
    if payload == "chat":
        return result.chat.chat.chat_id
    if payload == "llm_response":
        return result.llm_response.message.chat_id
    return ""
