"""Caller keys: their form, their hash, their roles, and the caller a verified key stands for.

A key is `lcl_` and 43 characters of base64url (32 random bytes): too much entropy to guess, so a
fast hash (SHA-256) is the right way to store it, and the hash is also how it is looked up. The
key itself is shown once, when it is made, and kept nowhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import uuid

PREFIX = "lcl_"
# The random bytes of a key (43 characters of base64url).
SECRET_BYTES = 32
# The characters of a key shown in lists so people can tell their keys apart ("lcl_AbCd").
SHOWN_CHARS = len(PREFIX) + 4
# The longest `authorization` value looked at: a key is 47 characters; anything much longer is none.
MAX_KEY_CHARS = 200

ADMIN = "admin"
APP = "app"
USER = "user"
ROLES = (ADMIN, APP, USER)


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def new_key_id() -> str:
    """The public name of a key, for lists and revocation."""
    return "key_" + uuid.uuid4().hex[:16]


def key_hash(key: str) -> str:
    """What is stored of a key, and how it is found: its SHA-256, in hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def shown_part(key: str) -> str:
    return key[:SHOWN_CHARS]


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who an instruction acts for: the role of its key, the user a `user` key is bound to, and
    `scope`, what makes its instruction ids its own ('' for a caller without a key)."""

    role: str
    user_id: str = ""
    key_id: str = ""
    scope: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def scope_of(key: str) -> str:
    """The scope of a key's instruction ids: part of its hash, known before the key is verified
    (so a failure can still reach the right caller) and useless to anyone without the key."""
    return "k" + key_hash(key)[:32]


def scoped(scope: str, instruction_id: str) -> str:
    """An instruction id as its caller's own: ids of different callers never meet."""
    return f"{scope}/{instruction_id}" if scope else instruction_id
