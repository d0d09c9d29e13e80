"""The user unit's rules: what a valid user is, and how users are created, changed and found."""

import dataclasses
import datetime
import re
from collections.abc import Sequence
from typing import Protocol

from services.common import paging
from services.common.errors import InvalidArgument
from services.common.keys import ROLES, USER
from services.common.limits import MAX_ID_CHARS
from services.user_unit.errors import KeyNotFound, KeyTaken, UsernameTaken, UserNotFound

USERNAME_RULE = "^[a-z][a-z0-9_]{2,29}$"
_USERNAME = re.compile(USERNAME_RULE)
MAX_DISPLAY_NAME = 100
MAX_PROFILE = 10_000
MAX_BATCH = 1_000
MAX_KEY_NAME = 100
_KEY_HASH = re.compile("^[0-9a-f]{64}$")


class User(Protocol):
    """A stored user, as the rules see it."""

    seq: int
    user_id: str
    username: str
    display_name: str
    profile: str
    record_instructions: bool
    created_at: datetime.datetime
    updated_at: datetime.datetime


class Users(Protocol):
    """The live users: store.Users over a transaction, or a fake in tests."""

    def get(self, user_id: str) -> User | None: ...
    def get_by_username(self, username: str) -> User | None: ...
    def get_many(self, user_ids: Sequence[str]) -> list[User]: ...
    def page(self, after: int | None, limit: int) -> list[User]: ...
    def add(self, username: str, display_name: str, profile: str) -> User: ...
    def change(self, user: User, **fields: object) -> User: ...
    def delete(self, user: User) -> None: ...


@dataclasses.dataclass(frozen=True)
class NewUser:
    username: str
    display_name: str
    profile: str


@dataclasses.dataclass(frozen=True)
class UserChanges:
    """Fields to change; None leaves a field as it is. An empty display name means the username."""

    username: str | None = None
    display_name: str | None = None
    profile: str | None = None


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_ID_CHARS:
        raise InvalidArgument(
            f"request_id must be at most {MAX_ID_CHARS} characters (got {len(request_id)})",
            reason="REQUEST_ID_TOO_LONG",
        )


def normalise_username(username: str) -> str:
    name = username.lower()
    if not _USERNAME.fullmatch(name):
        raise InvalidArgument(
            f"username {username!r} is invalid: lower-cased, it must match {USERNAME_RULE} "
            "(a letter, then 2 to 29 letters, digits or underscores)",
            reason="INVALID_USERNAME",
        )
    return name


def _check_display_name(display_name: str) -> str:
    if len(display_name) > MAX_DISPLAY_NAME:
        raise InvalidArgument(
            f"display_name must be at most {MAX_DISPLAY_NAME} characters (got {len(display_name)})",
            reason="DISPLAY_NAME_TOO_LONG",
        )
    return display_name


def _check_profile(profile: str) -> str:
    if len(profile) > MAX_PROFILE:
        raise InvalidArgument(
            f"profile must be at most {MAX_PROFILE:,} characters (got {len(profile):,})",
            reason="PROFILE_TOO_LONG",
        )
    return profile


def _check_user_id(user_id: str) -> str:
    if not user_id:
        raise InvalidArgument("user_id must not be empty", reason="MISSING_USER_ID")
    return user_id


def new_user(username: str, display_name: str | None, profile: str | None) -> NewUser:
    name = normalise_username(username)
    return NewUser(
        username=name,
        display_name=_check_display_name(display_name or "") or name,
        profile=_check_profile(profile or ""),
    )


def user_changes(username: str | None, display_name: str | None, profile: str | None) -> UserChanges:
    return UserChanges(
        username=None if username is None else normalise_username(username),
        display_name=None if display_name is None else _check_display_name(display_name),
        profile=None if profile is None else _check_profile(profile),
    )


def live_user(users: Users, user_id: str) -> User:
    user = users.get(_check_user_id(user_id))
    if user is None:
        raise UserNotFound(user_id)
    return user


def _claim_username(users: Users, username: str) -> None:
    # The database's partial unique index backs this check against concurrent writers.
    if users.get_by_username(username) is not None:
        raise UsernameTaken(username)


def create_user(users: Users, new: NewUser) -> User:
    _claim_username(users, new.username)
    return users.add(new.username, new.display_name, new.profile)


def update_user(users: Users, user_id: str, changes: UserChanges) -> User:
    user = live_user(users, user_id)
    fields: dict[str, object] = {}
    if changes.username is not None and changes.username != user.username:
        _claim_username(users, changes.username)
        fields["username"] = changes.username
    if changes.display_name is not None:
        fields["display_name"] = changes.display_name or fields.get("username", user.username)
    if changes.profile is not None:
        fields["profile"] = changes.profile
    return users.change(user, **fields)


def set_instruction_recording(users: Users, user_id: str, enabled: bool) -> User:
    return users.change(live_user(users, user_id), record_instructions=enabled)


def delete_user(users: Users, user_id: str) -> None:
    users.delete(live_user(users, user_id))


def get_user(users: Users, *, user_id: str | None = None, username: str | None = None) -> User:
    """Finds a live user by exactly one key, as GetUserRequest's oneof gives it."""
    if user_id is not None:
        return live_user(users, user_id)
    if username is None:
        raise InvalidArgument("set one of user_id or username", reason="MISSING_USER_KEY")
    if not username:
        raise InvalidArgument("username must not be empty", reason="MISSING_USERNAME")
    user = users.get_by_username(username.lower())
    if user is None:
        raise UserNotFound(username=username.lower())
    return user


def check_batch(user_ids: Sequence[str]) -> list[str]:
    """The distinct ids in the order first asked for."""
    if len(user_ids) > MAX_BATCH:
        raise InvalidArgument(
            f"at most {MAX_BATCH:,} user_ids per call (got {len(user_ids):,})", reason="TOO_MANY_USER_IDS"
        )
    return list(dict.fromkeys(_check_user_id(user_id) for user_id in user_ids))


def batch_get_users(users: Users, user_ids: list[str], omit_missing: bool = False) -> list[User]:
    """The live users of check_batch's ids, in that order.

    An unknown or deleted id fails the call (naming the first such id), or is left out with omit_missing.
    """
    found = {user.user_id: user for user in users.get_many(user_ids)} if user_ids else {}
    if not omit_missing:
        for user_id in user_ids:
            if user_id not in found:
                raise UserNotFound(user_id)
    return [found[user_id] for user_id in user_ids if user_id in found]


def list_users(users: Users, page_size: int, page_token: str) -> tuple[list[User], str]:
    """One page of live users, oldest first, and the next page's token ("" on the last page)."""
    limit = paging.page_size(page_size)
    after = paging.decode_token(page_token)
    rows = users.page(after, limit + 1)
    if len(rows) <= limit:
        return rows, ""
    return rows[:limit], paging.encode_token(rows[limit - 1].seq)


# ---- caller keys ----


class Key(Protocol):
    """A stored key, as the rules see it: never the key itself."""

    seq: int
    key_id: str
    key_hash: str
    role: str
    user_id: str
    name: str
    shown_part: str
    created_at: datetime.datetime


class Keys(Protocol):
    """The caller keys: store.Keys over a transaction, or a fake in tests."""

    def taken(self, key_id: str, key_hash: str) -> bool: ...
    def add(self, **fields: object) -> Key: ...
    def get(self, key_id: str) -> Key | None: ...
    def by_hashes(self, key_hashes: Sequence[str]) -> list[Key]: ...
    def page(self, after: int | None, limit: int) -> list[Key]: ...
    def revoke(self, key: Key) -> None: ...


def check_key_hash(key_hash: str) -> str:
    if not _KEY_HASH.fullmatch(key_hash):
        raise InvalidArgument("key_hash must be a SHA-256 in 64 lower-case hex digits", reason="INVALID_KEY_HASH")
    return key_hash


def new_key(key_id: str, key_hash: str, role: str, user_id: str, name: str, shown_part: str) -> dict:
    """The fields of a key to store, checked: a known role, a user id exactly for user keys."""
    if not key_id or len(key_id) > 36:
        raise InvalidArgument("key_id must be 1 to 36 characters", reason="INVALID_KEY_ID")
    if role not in ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(ROLES)}, not {role!r}", reason="INVALID_ROLE")
    if (role == USER) != bool(user_id):
        raise InvalidArgument("a user key names its user_id, and only a user key does", reason="INVALID_KEY_USER")
    if len(name) > MAX_KEY_NAME:
        raise InvalidArgument(f"name must be at most {MAX_KEY_NAME} characters (got {len(name)})",
                              reason="KEY_NAME_TOO_LONG")
    return dict(key_id=key_id, key_hash=check_key_hash(key_hash), role=role, user_id=user_id, name=name,
                shown_part=shown_part[:16])


def create_key(keys: Keys, users: Users, fields: dict) -> Key:
    if fields["user_id"]:
        live_user(users, str(fields["user_id"]))
    if keys.taken(str(fields["key_id"]), str(fields["key_hash"])):
        raise KeyTaken(str(fields["key_id"]))
    return keys.add(**fields)


def revoke_key(keys: Keys, key_id: str) -> None:
    key = keys.get(key_id) if key_id else None
    if key is None:
        raise KeyNotFound(key_id)
    keys.revoke(key)


def verify_keys(keys: Keys, users: Users, key_hashes: Sequence[str]) -> list[Key]:
    """The live keys among the hashes: not revoked, and a user key's user live."""
    if not key_hashes:
        raise InvalidArgument("key_hashes must not be empty", reason="MISSING_KEY_HASHES")
    if len(key_hashes) > MAX_BATCH:
        raise InvalidArgument(f"at most {MAX_BATCH:,} key_hashes per call (got {len(key_hashes):,})",
                              reason="TOO_MANY_KEY_HASHES")
    found = keys.by_hashes(list(dict.fromkeys(check_key_hash(key_hash) for key_hash in key_hashes)))
    bound = [key.user_id for key in found if key.user_id]
    live = {user.user_id for user in users.get_many(bound)} if bound else set()
    return [key for key in found if not key.user_id or key.user_id in live]


def list_keys(keys: Keys, page_size: int, page_token: str) -> tuple[list[Key], str]:
    """One page of live keys, oldest first, and the next page's token ("" on the last page)."""
    limit = paging.page_size(page_size)
    rows = keys.page(paging.decode_token(page_token), limit + 1)
    if len(rows) <= limit:
        return rows, ""
    return rows[:limit], paging.encode_token(rows[limit - 1].seq)
