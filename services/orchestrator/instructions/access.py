"""Who may run what: a caller's key checked (authentication), and its role held against the
instruction's catalog row (authorization).

A caller shows a key as `authorization: Bearer <key>`: gRPC metadata at the front door, an AMQP
header on a queued message (the front door queues its callers' instructions with their key).
Without a key, a caller on a suite that requires none may do everything; on a suite that
requires keys, a gRPC call is refused and a queued message acts with the configured queue role.
Refusals never say whether what the instruction names exists: a user key asking for a chat it is
no member of hears the same whether the chat exists or not.
"""

from __future__ import annotations

import grpc

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import json_type_of
from services.common.errors import PermissionDenied, Unauthenticated
from services.common.keys import ADMIN, APP, MAX_KEY_CHARS, USER, Caller, key_hash, scope_of
from services.orchestrator.instructions.catalog import Access, chat_id_of, entry_of, user_ids_of
from services.orchestrator.instructions.run import ANYONE
from services.orchestrator.units.gateways import Units

HEADER = "authorization"
SCHEME = "Bearer "
# A unit's answer meaning that what was named is not there (or not an id at all).
_ABSENT = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def key_in(authorization: str | bytes | None) -> str | None:
    """The key of an `authorization` value; None when there is none. A value that is no bearer
    key is refused (UNAUTHENTICATED), so a typo never falls back to the keyless role."""
    if authorization is None or authorization == "" or authorization == b"":
        return None
    if isinstance(authorization, bytes):
        authorization = authorization.decode("utf-8", "replace")
    if not isinstance(authorization, str) or not authorization.startswith(SCHEME) \
            or len(authorization) > MAX_KEY_CHARS:
        raise Unauthenticated(f"the {HEADER} header must be `{SCHEME}<key>`", reason="KEY_INVALID")
    return authorization[len(SCHEME):].strip()


class Gate:
    """Authentication with the keys of user_unit, authorization with the catalog's access rules."""

    def __init__(self, units: Units, require_key: bool, queue_role: str | None = APP):
        self._units = units
        self.keys = units.keys
        # Whether a caller must show a key (LLMCHATLINKER_AUTH=keys).
        self.require_key = require_key
        # The role of a queued message without a key when keys are required; None refuses it.
        self._queue_role = queue_role

    # ---- authentication ----

    @staticmethod
    def scope(authorization) -> str:
        """The scope of the caller's instruction ids, read without verifying the key ('' for none)."""
        try:
            key = key_in(authorization)
        except Unauthenticated:
            return ""
        return scope_of(key) if key else ""

    async def caller(self, authorization, queued: bool) -> Caller:
        """Who the `authorization` value stands for; UNAUTHENTICATED for no key where one is needed,
        or for a key that is unknown, revoked or whose user is deleted (the same words for all)."""
        key = key_in(authorization)
        if key is None:
            if not self.require_key:
                return ANYONE
            if queued and self._queue_role:
                return Caller(role=self._queue_role)
            raise Unauthenticated(f"this suite requires a caller key: send `{HEADER}: {SCHEME}<key>` "
                                  "(`llmchatlinker keys create` makes one)", reason="KEY_MISSING")
        stored = await self._units.keys.verify(key_hash(key))
        if stored is None:
            raise Unauthenticated("the caller key is not valid (unknown or revoked)", reason="KEY_INVALID")
        return Caller(role=stored.role, user_id=stored.user_id, key_id=stored.key_id, scope=scope_of(key))

    @staticmethod
    def require_admin(caller: Caller, what: str) -> None:
        if not caller.is_admin:
            raise PermissionDenied(f"only an admin key may {what}", reason="ROLE_NOT_PERMITTED")

    # ---- authorization ----

    def precheck(self, caller: Caller, instruction: orchestrator_pb2.Instruction) -> None:
        """What needs no unit call: the role against the row, and a user key's named users."""
        entry = entry_of(instruction)
        if entry is None or caller.role == ADMIN:
            return
        if caller.role not in (APP, USER) or entry.access is Access.ADMIN \
                or (caller.role == USER and entry.access is Access.APP):
            raise PermissionDenied(f"a key of role {caller.role} may not run {json_type_of(instruction)}",
                                   reason="ROLE_NOT_PERMITTED")
        if caller.role != USER or entry.access is Access.OWN_LIST:
            return
        if not caller.user_id:
            raise _not_own(instruction)
        request = getattr(instruction, instruction.WhichOneof("instruction"))
        named = user_ids_of(instruction)
        if any(user_id != caller.user_id for user_id in named):
            raise _not_own(instruction)
        if entry.access is Access.OWN_MESSAGE and request.user_id != caller.user_id:
            raise _not_own(instruction)
        by_username = entry.access is Access.OWN_OR_USERNAME and not named and request.username
        if entry.user_field and not named and not by_username:
            raise _not_own(instruction)

    async def authorize(self, caller: Caller, instruction: orchestrator_pb2.Instruction) -> None:
        """The precheck, then for a user key what needs the units: that a username, a chat or a
        message's chat is its own. PERMISSION_DENIED (NOT_OWN) alike for what is not there."""
        self.precheck(caller, instruction)
        entry = entry_of(instruction)
        if entry is None or caller.role != USER or entry.access is Access.OWN_LIST:
            return
        request = getattr(instruction, instruction.WhichOneof("instruction"))
        if entry.access is Access.OWN_OR_USERNAME and not user_ids_of(instruction):
            own = await self._present(self._units.users.get_user(caller.user_id))
            if own is None or own.username != request.username.lower():
                raise _not_own(instruction)
        chat_id = chat_id_of(instruction)
        if entry.access is Access.OWN_MESSAGE:
            found = await self._present(self._units.chats.GetMessage(
                chat_pb2.GetMessageRequest(message_id=request.message_id)))
            if found is None:
                raise _not_own(instruction)
            chat_id = found.message.chat_id
        if entry.chat_field or entry.access is Access.OWN_MESSAGE:
            chat = await self._present(self._units.chats.GetChat(
                chat_pb2.GetChatRequest(chat_id=chat_id, message_page_size=1)))
            if chat is None or caller.user_id not in chat.chat.user_ids:
                raise _not_own(instruction)

    @staticmethod
    async def _present(call):
        """The unit's answer, or None when it says that what was named is not there."""
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            if error.code() in _ABSENT:
                return None
            raise


def _not_own(instruction: orchestrator_pb2.Instruction) -> PermissionDenied:
    return PermissionDenied(f"a user key may run {json_type_of(instruction)} only on its own user and the chats "
                            "its user is a member of", reason="NOT_OWN")
