"""What every Control Unit handler works with: one instruction's run, and helpers shared by the handlers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import grpc
from google.protobuf import message as protobuf_message

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from llmchatlinker.wire import instruction_type_of
from services.common.errors import InvalidArgument
from services.orchestrator import facts
from services.orchestrator.channels import UNARY_DEADLINE_S, UnitChannels

if TYPE_CHECKING:
    from services.orchestrator.joined import JoinedCalls

log = logging.getLogger(__name__)

DOMAIN = "orchestrator.llmchatlinker.dev"
# A list asked for with page_size 0 and no page_token is followed to its end, up to this many
# items (legacy JSON lists have no paging); the rest stays reachable through next_page_token.
MAX_COLLECTED_ITEMS = 10_000
# Page size used while following a list: the units' maximum, so 10,000 items take 10 calls.
COLLECTING_PAGE_SIZE = 1_000

Emit = Callable[[orchestrator_pb2.Result], Awaitable[None]]
# A handler's answer: the Result payload as keyword arguments ({"user": user}); {} for none.
Payload = dict[str, protobuf_message.Message]


@dataclasses.dataclass
class Run:
    """One instruction being executed."""

    channels: UnitChannels
    instruction: orchestrator_pb2.Instruction
    emit: Emit
    joined: JoinedCalls
    _emit_failed: bool = dataclasses.field(default=False, init=False)

    def request_id(self, step: str) -> str:
        """The idempotency key of one mutating unit call of this instruction."""
        return facts.request_id(self.instruction.instruction_id, step)

    async def progress(self, **payload: protobuf_message.Message) -> None:
        """Passes a non-final event to `emit`. A failing listener is logged once and then ignored:
        the instruction is durable work and finishes whether or not anyone watches it."""
        if self._emit_failed:
            return
        event = orchestrator_pb2.Result(
            instruction_id=self.instruction.instruction_id,
            instruction_type=instruction_type_of(self.instruction),
            final=False,
            status=orchestrator_pb2.Status(code=grpc.StatusCode.OK.value[0]),
            **payload,
        )
        try:
            await self.emit(event)
        except Exception:  # noqa: BLE001 - the listener's fault, not the instruction's
            self._emit_failed = True
            log.exception("progress listener of instruction %s failed; further progress is dropped",
                          self.instruction.instruction_id)


def present(request: protobuf_message.Message, *names: str) -> dict:
    """The optional fields among `names` that are set, as keyword arguments."""
    return {name: getattr(request, name) for name in names if request.HasField(name)}


def require(value: str, name: str) -> str:
    """Refuses an empty id where an empty value would widen the call (a list of everything)."""
    if not value:
        raise InvalidArgument(f"{name} is required", reason="INVALID_FIELD", field=name)
    return value


async def collect(method: Callable, request: protobuf_message.Message, items: str) -> tuple[list, str]:
    """The items of a unit list and the token after them.

    With page_size > 0 or a page_token the caller pages: one page is fetched. With neither, the
    list is followed to its end (at most MAX_COLLECTED_ITEMS items).
    """
    if request.page_size or request.page_token:
        response = await method(request, timeout=UNARY_DEADLINE_S)
        return list(getattr(response, items)), response.next_page_token
    request.page_size = COLLECTING_PAGE_SIZE
    collected: list = []
    while True:
        response = await method(request, timeout=UNARY_DEADLINE_S)
        collected.extend(getattr(response, items))
        if not response.next_page_token or len(collected) >= MAX_COLLECTED_ITEMS:
            return collected, response.next_page_token
        request.page_token = response.next_page_token


async def get_user(channels: UnitChannels, user_id: str) -> user_pb2.User:
    """A live user (NOT_FOUND from the user unit otherwise)."""
    request = user_pb2.GetUserRequest(user_id=require(user_id, "user_id"))
    return (await channels.users.GetUser(request, timeout=UNARY_DEADLINE_S)).user


async def live_users(channels: UnitChannels, user_ids: Iterable[str]) -> list[user_pb2.User]:
    """The live users among `user_ids`, in that order; deleted or unknown ids are left out.

    One BatchGetUsers call; when it fails with NOT_FOUND (some id is gone) or INVALID_ARGUMENT
    (some id is malformed), one GetUser per id.
    """
    ids = [user_id for user_id in dict.fromkeys(user_ids) if user_id]
    if not ids:
        return []
    try:
        response = await channels.users.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=ids),
                                                      timeout=UNARY_DEADLINE_S)
        found = {user.user_id: user for user in response.users}
        return [found[user_id] for user_id in ids if user_id in found]
    except grpc.aio.AioRpcError as error:
        if error.code() not in _NOT_A_LIVE_USER:
            raise
    users = await asyncio.gather(*(_user_or_none(channels, user_id) for user_id in ids))
    return [user for user in users if user is not None]


_NOT_A_LIVE_USER = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


async def _user_or_none(channels: UnitChannels, user_id: str) -> user_pb2.User | None:
    try:
        return await get_user(channels, user_id)
    except grpc.aio.AioRpcError as error:
        if error.code() in _NOT_A_LIVE_USER:
            return None
        raise
