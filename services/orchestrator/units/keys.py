"""Caller keys on user_unit: verification on the hot path (kept at most a second, one lookup per
key at a time, lookups of different keys joined into one VerifyKeys call), and the admin calls."""

from __future__ import annotations

import asyncio

from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from services.common import keys
from services.common.batching import Batcher
from services.orchestrator.units.deadlined import DeadlinedStub

# How long a verified (or unknown) key is taken as it was: a key revoked through any replica is
# refused everywhere within this time. Kept from when the lookup began, not when it answered.
KEY_TTL_S = 1.0
# Kept answers beyond this many are cleared of the expired ones.
KEPT_KEYS = 10_000


class KeyGateway:
    """Verifies keys by their hash; makes, lists and revokes them."""

    def __init__(self, users_stub, ttl_s: float = KEY_TTL_S):
        self._users = DeadlinedStub(users_stub)
        self._ttl_s = min(ttl_s, KEY_TTL_S)
        # Key hash -> (until when, loop time; the key, or None for no live key).
        self._kept: dict[str, tuple[float, user_pb2.Key | None]] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self._lookups: Batcher[str, user_pb2.Key | None] = Batcher(self._verify_batch)

    async def verify(self, key_hash: str) -> user_pb2.Key | None:
        """The live key with this hash, or None (unknown, revoked, or its user deleted)."""
        kept = self._kept.get(key_hash)
        loop = asyncio.get_running_loop()
        if kept is not None and kept[0] > loop.time():
            return kept[1]
        pending = self._pending.get(key_hash)
        if pending is None:
            pending = self._pending[key_hash] = asyncio.ensure_future(self._look_up(key_hash, loop.time()))
            pending.add_done_callback(lambda _done: self._pending.pop(key_hash, None))
        return await asyncio.shield(pending)

    async def _look_up(self, key_hash: str, began: float) -> user_pb2.Key | None:
        key = await self._lookups.call(key_hash)
        if len(self._kept) >= KEPT_KEYS:
            now = asyncio.get_running_loop().time()
            self._kept = {hash_: kept for hash_, kept in self._kept.items() if kept[0] > now}
        self._kept[key_hash] = (began + self._ttl_s, key)
        return key

    async def _verify_batch(self, key_hashes: list[str]) -> list[user_pb2.Key | None]:
        response = await self._users.VerifyKeys(user_pb2.VerifyKeysRequest(key_hashes=list(dict.fromkeys(key_hashes))))
        found = {verified.key_hash: verified.key for verified in response.keys}
        return [found.get(key_hash) for key_hash in key_hashes]

    async def create(self, role: str, user_id: str, name: str) -> tuple[user_pb2.Key, str]:
        """A new key, stored as its hash: the stored key and the key itself (shown once)."""
        key, key_id = keys.new_key(), keys.new_key_id()
        response = await self._users.CreateKey(user_pb2.CreateKeyRequest(
            request_id=f"create-key:{key_id}", key_id=key_id, key_hash=keys.key_hash(key), role=role,
            user_id=user_id, name=name, shown_part=keys.shown_part(key)))
        return response.key, key

    async def list(self, page_size: int, page_token: str) -> user_pb2.ListKeysResponse:
        return await self._users.ListKeys(user_pb2.ListKeysRequest(page_size=page_size, page_token=page_token))

    async def revoke(self, key_id: str) -> None:
        """Revokes a key; this replica forgets it at once, the others within KEY_TTL_S."""
        await self._users.RevokeKey(user_pb2.RevokeKeyRequest(request_id=f"revoke-key:{key_id}", key_id=key_id))
        self._kept = {hash_: kept for hash_, kept in self._kept.items() if kept[1] is None or kept[1].key_id != key_id}
