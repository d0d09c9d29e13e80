"""The user unit's gateway: its calls with their deadline, the live-user check joined across
instructions, and the recording flags every read of users keeps fresh."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc

from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from services.common.batching import Batcher
from services.orchestrator.units.deadlined import DeadlinedStub
from services.orchestrator.units.recording_flags import RecordingFlags

# A BatchGetUsers refused with one of these names some id that is gone or malformed.
_NOT_A_LIVE_USER = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


class UserGateway(DeadlinedStub):
    """UserService's methods (each with the unit-call deadline), plus the joined and cached reads."""

    def __init__(self, stub, flags: RecordingFlags | None = None):
        super().__init__(stub)
        self.flags = flags or RecordingFlags()
        self._checks: Batcher[str, user_pb2.User | None] = Batcher(self._batch_live_users)

    async def GetUser(self, request: user_pb2.GetUserRequest) -> user_pb2.GetUserResponse:  # noqa: N802 - the unit's method
        """UserService.GetUser; the user read keeps its recording flag fresh, so recording a
        USER_GET costs no second read of the same user."""
        began = self.flags.tick()
        response = await self._stub.GetUser(request, timeout=self._deadline_s)
        self._keep_flags(began, [response.user.user_id], [response.user])
        return response

    async def get_user(self, user_id: str) -> user_pb2.User:
        """A live user; the unit's own error otherwise (NOT_FOUND, INVALID_ARGUMENT)."""
        return (await self.GetUser(user_pb2.GetUserRequest(user_id=user_id))).user

    async def live_user(self, user_id: str) -> user_pb2.User:
        """As get_user, but joined with the other instructions' checks into one BatchGetUsers."""
        user = await self._checks.call(user_id)
        if user is None:
            # Rare: asked alone, the unit answers with its own code, reason and message.
            return await self.get_user(user_id)
        return user

    async def _batch_live_users(self, user_ids: list[str]) -> list[user_pb2.User | None]:
        unique = list(dict.fromkeys(user_ids))
        began = self.flags.tick()
        try:
            response = await self.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=unique, omit_missing=True))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return [None] * len(user_ids)  # a malformed id among them: each caller asks alone
        self._keep_flags(began, unique, response.users)
        found = {user.user_id: user for user in response.users}
        return [found.get(user_id) for user_id in user_ids]

    async def live_users(self, user_ids: Iterable[str]) -> list[user_pb2.User]:
        """The live users among `user_ids`, in that order; deleted or unknown ids are left out.

        One BatchGetUsers call; when it fails with NOT_FOUND (some id is gone) or INVALID_ARGUMENT
        (some id is malformed), one GetUser per id.
        """
        ids = [user_id for user_id in dict.fromkeys(user_ids) if user_id]
        if not ids:
            return []
        try:
            response = await self.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=ids))
            found = {user.user_id: user for user in response.users}
            return [found[user_id] for user_id in ids if user_id in found]
        except grpc.aio.AioRpcError as error:
            if error.code() not in _NOT_A_LIVE_USER:
                raise
        users = await asyncio.gather(*(self._user_or_none(user_id) for user_id in ids))
        return [user for user in users if user is not None]

    async def _user_or_none(self, user_id: str) -> user_pb2.User | None:
        try:
            return await self.get_user(user_id)
        except grpc.aio.AioRpcError as error:
            if error.code() in _NOT_A_LIVE_USER:
                return None
            raise

    async def recording_on(self, user_ids: list[str]) -> list[str]:
        """The ids among `user_ids` (in that order) of live users whose recording is on."""
        flags = self.flags.known(user_ids)
        missing = [user_id for user_id in user_ids if user_id not in flags]
        if missing:
            began = self.flags.tick()
            flags.update(self._keep_flags(began, missing, await self.live_users(missing)))
        return [user_id for user_id in user_ids if flags[user_id]]

    def _keep_flags(self, began: int, asked: list[str], users) -> dict[str, bool]:
        """Keeps the recording flags of users just read by a lookup that began at `began`; the ids
        asked for and not among `users` are unknown or deleted, so never recorded."""
        looked_up = dict.fromkeys(asked, False)
        looked_up.update((user.user_id, user.record_instructions) for user in users)
        self.flags.looked_up(began, looked_up)
        return looked_up
