"""Instruction recording: each instruction naming a user whose recording is on becomes a record in the db unit."""

import asyncio
import itertools
import logging
import time

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

# Seconds a user's recording flag is trusted without asking the user unit again. A change made
# through this process is seen by the next instruction (its result updates the flag); a change
# made through another orchestrator replica is seen here within this many seconds.
RECORDING_FLAG_TTL_S = 1.0
# Users whose flag is kept; past it the oldest entries go (a miss costs one BatchGetUsers).
RECORDING_FLAG_ENTRIES = 10_000

# Instructions whose final result carries the changed user as it now is (result.user).
_USER_CHANGES = frozenset({"USER_INSTRUCTION_RECORDING_ENABLE", "USER_INSTRUCTION_RECORDING_DISABLE", "USER_UPDATE"})
_USER_DELETE = "USER_DELETE"

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_OK = grpc.StatusCode.OK.value[0]


class RecordingFlags:
    """Which users have recording on, as last seen by this process; saves a user unit hop per instruction.

    A flag this process changed wins over one read by a lookup that began before the change, so a
    slow lookup never brings the old value back.
    """

    def __init__(self, ttl_s: float = RECORDING_FLAG_TTL_S, entries: int = RECORDING_FLAG_ENTRIES,
                 clock=time.monotonic):
        self._ttl_s = ttl_s
        self._entries = entries
        self._clock = clock
        self._ticks = itertools.count(1)
        # user_id -> (recording on, or None when it must be looked up; expires at; tick of the write)
        self._flags: dict[str, tuple[bool | None, float, int]] = {}

    def known(self, user_ids: list[str]) -> dict[str, bool]:
        """The flags still fresh among `user_ids`."""
        now = self._clock()
        fresh = {}
        for user_id in user_ids:
            entry = self._flags.get(user_id)
            if entry is not None and entry[0] is not None and entry[1] > now:
                fresh[user_id] = entry[0]
        return fresh

    def tick(self) -> int:
        """A mark taken before a lookup; pass it to `looked_up`."""
        return next(self._ticks)

    def looked_up(self, since_tick: int, flags: dict[str, bool]) -> None:
        """Flags read from the user unit by a lookup that began at `since_tick`."""
        for user_id, flag in flags.items():
            entry = self._flags.get(user_id)
            if entry is None or entry[2] < since_tick:
                self._put(user_id, flag)

    def changed(self, user_id: str, flag: bool | None) -> None:
        """A change this process made: the new flag, or None when it is not known."""
        self._put(user_id, flag)

    def _put(self, user_id: str, flag: bool | None) -> None:
        self._flags.pop(user_id, None)  # re-inserted last: the dict's order is the eviction order
        self._flags[user_id] = (flag, self._clock() + self._ttl_s, next(self._ticks))
        while len(self._flags) > self._entries:
            del self._flags[next(iter(self._flags))]


# One per orchestrator process.
_flags = RecordingFlags()


async def record_instruction(channels: UnitChannels, instruction: orchestrator_pb2.Instruction,
                             result: orchestrator_pb2.Result) -> None:
    """Records the instruction for each user it names whose recording is on; never raises.

    Unknown or deleted users are skipped. Each record carries the request id
    "{instruction_id}:record:{user_id}", so recording an instruction again adds nothing.
    """
    json_type = json_type_of(instruction)
    user_ids = facts.user_ids_of(instruction)
    if not user_ids:
        return
    try:
        _note_changes(json_type, user_ids, result)
        if json_type in UNRECORDED:
            return
        recorded = await _recording(channels, user_ids)
        if not recorded:
            return
        chat_id = facts.chat_id_of(instruction) or _chat_of(result)
        outcome = _CODE_NAMES.get(result.status.code, str(result.status.code))
        await asyncio.gather(*(channels.records.CreateRecord(db_pb2.CreateRecordRequest(
            request_id=facts.request_id(instruction.instruction_id, f"record:{user_id}"),
            user_id=user_id,
            chat_id=chat_id,
            instruction=json_type,
            instruction_id=instruction.instruction_id,
            outcome=outcome,
        ), timeout=UNARY_DEADLINE_S) for user_id in recorded))
    except Exception:  # noqa: BLE001 - a lost record must not fail the instruction
        log.exception("could not record instruction %s (%s)", instruction.instruction_id, json_type)


def _note_changes(json_type: str, user_ids: list[str], result: orchestrator_pb2.Result) -> None:
    """Keeps the flags of the users this instruction changed in step with the change."""
    ok = result.status.code == _OK
    if json_type in _USER_CHANGES:
        user = result.user if ok and result.WhichOneof("payload") == "user" else None
        for user_id in user_ids:
            _flags.changed(user_id, user.record_instructions if user and user.user_id == user_id else None)
    elif json_type == _USER_DELETE:
        for user_id in user_ids:
            _flags.changed(user_id, False if ok else None)  # a deleted user is never recorded


async def _recording(channels: UnitChannels, user_ids: list[str]) -> list[str]:
    """The ids among `user_ids` (in that order) of live users whose recording is on."""
    flags = _flags.known(user_ids)
    missing = [user_id for user_id in user_ids if user_id not in flags]
    if missing:
        began = lookup_began()
        flags.update(users_read(began, missing, await live_users(channels, missing)))
    return [user_id for user_id in user_ids if flags[user_id]]


def lookup_began() -> int:
    """A mark to take before reading users from the user unit; pass it to `users_read`."""
    return _flags.tick()


def users_read(began: int, asked: list[str], users) -> dict[str, bool]:
    """Keeps the recording flags of users just read (any read of live users may pass them on);
    the ids asked for and not among `users` are unknown or deleted, so never recorded."""
    looked_up = dict.fromkeys(asked, False)
    looked_up.update((user.user_id, user.record_instructions) for user in users)
    _flags.looked_up(began, looked_up)
    return looked_up


def _chat_of(result: orchestrator_pb2.Result) -> str:
    """The chat a result tells of, for instructions that name none (CHAT_CREATE, REGENERATE)."""
    payload = result.WhichOneof("payload")
    if payload == "chat":
        return result.chat.chat.chat_id
    if payload == "llm_response":
        return result.llm_response.message.chat_id
    return ""
