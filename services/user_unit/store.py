"""The user unit's tables and queries; the only module of the unit that speaks SQLAlchemy."""

import contextlib
import datetime
import uuid
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import request_ledger, utcnow
from services.common.retention import deleted_at_index, deleted_rule, ledger_rule
from services.user_unit.errors import UsernameTaken

_LIVE = "deleted_at IS NULL"


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData()


metadata = Base.metadata
request_ledger(metadata)
# What the pruner deletes (services.common.retention): old request ids and users deleted long ago.
RETENTION_RULES = (ledger_rule(), deleted_rule("users"), deleted_rule("keys"))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.Index("ix_users_user_id", "user_id", unique=True),
        deleted_at_index("users"),
        # Usernames are unique among live users only: a deleted user's name may be taken again.
        sa.Index(
            "ix_users_live_username",
            "username",
            unique=True,
            postgresql_where=sa.text(_LIVE),
            sqlite_where=sa.text(_LIVE),
        ),
    )

    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(36))
    username: Mapped[str] = mapped_column(sa.String(30))
    display_name: Mapped[str] = mapped_column(sa.String(100))
    profile: Mapped[str] = mapped_column(sa.Text)
    record_instructions: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(sa.DateTime(timezone=True))


_USERS = User.__table__
_COLUMNS = tuple(column.name for column in _USERS.c)
# Core statements built once: building and cache-keying an ORM select cost more CPU per
# read than the query itself, and these run on every instruction that names a user.
_LIVE_USERS = sa.select(*_USERS.c).where(_USERS.c.deleted_at.is_(None))
_BY_ID = _LIVE_USERS.where(_USERS.c.user_id == sa.bindparam("user_id"))
_BY_USERNAME = _LIVE_USERS.where(_USERS.c.username == sa.bindparam("username"))
_BY_IDS = _LIVE_USERS.where(_USERS.c.user_id.in_(sa.bindparam("user_ids", expanding=True)))
_FIRST_PAGE = _LIVE_USERS.order_by(_USERS.c.seq).limit(sa.bindparam("limit"))
_NEXT_PAGE = _LIVE_USERS.where(_USERS.c.seq > sa.bindparam("after")).order_by(_USERS.c.seq).limit(sa.bindparam("limit"))
_INSERT = sa.insert(_USERS)
_UPDATE = sa.update(_USERS).where(_USERS.c.seq == sa.bindparam("row_seq"))


class StoredUser(NamedTuple):
    """A user row, its fields in the table's column order.

    Rows read are turned into these: a named tuple's attribute reads cost a tenth of an
    sa.Row's, and a 32-user batch reads seven attributes of each user to build its reply.
    """

    seq: int
    user_id: str
    username: str
    display_name: str
    profile: str
    record_instructions: bool
    created_at: datetime.datetime
    updated_at: datetime.datetime
    deleted_at: datetime.datetime | None


assert StoredUser._fields == _COLUMNS, "StoredUser must list the users table's columns in order"
_stored = StoredUser._make


class Users:
    """The live users seen through one transaction (service.Users).

    Works on a read transaction's connection (Database.reading) or a write transaction's
    session (Database.transaction, run_once); either way it runs Core statements.
    """

    def __init__(self, transaction: orm.Session | sa.Connection):
        self._connection = transaction.connection() if isinstance(transaction, orm.Session) else transaction

    def get(self, user_id: str) -> StoredUser | None:
        return self._one(_BY_ID, {"user_id": user_id})

    def get_by_username(self, username: str) -> StoredUser | None:
        return self._one(_BY_USERNAME, {"username": username})

    def get_many(self, user_ids: Sequence[str]) -> list[StoredUser]:
        if len(user_ids) == 1:
            # The common batch of one: an expanding IN is rendered anew on every call.
            user = self.get(user_ids[0])
            return [user] if user is not None else []
        return self._all(_BY_IDS, {"user_ids": list(user_ids)})

    def page(self, after: int | None, limit: int) -> list[StoredUser]:
        if after is None:
            return self._all(_FIRST_PAGE, {"limit": limit})
        return self._all(_NEXT_PAGE, {"after": after, "limit": limit})

    def _one(self, statement: sa.Select, parameters: dict) -> StoredUser | None:
        row = self._connection.execute(statement, parameters).one_or_none()
        return None if row is None else _stored(row)

    def _all(self, statement: sa.Select, parameters: dict) -> list[StoredUser]:
        return list(map(_stored, self._connection.execute(statement, parameters).all()))

    def add(self, username: str, display_name: str, profile: str) -> StoredUser:
        now = utcnow()
        fields = dict(
            user_id=str(uuid.uuid4()),
            username=username,
            display_name=display_name,
            profile=profile,
            record_instructions=False,
            created_at=now,
            updated_at=now,
            deleted_at=None,
        )
        seq = self._connection.execute(_INSERT, fields).inserted_primary_key[0]
        return StoredUser(seq=seq, **fields)

    def change(self, user: StoredUser, **fields: object) -> StoredUser:
        changed = {name: value for name, value in fields.items() if getattr(user, name) != value}
        if not changed:
            return user
        changed["updated_at"] = utcnow()
        self._connection.execute(_UPDATE, {"row_seq": user.seq, **changed})
        return user._replace(**changed)

    def delete(self, user: StoredUser) -> None:
        now = utcnow()
        self._connection.execute(_UPDATE, {"row_seq": user.seq, "deleted_at": now, "updated_at": now})


class Key(Base):
    """A caller key: its SHA-256, never the key; revoked keys keep their row (deleted_at) until purged."""

    __tablename__ = "keys"
    __table_args__ = (
        sa.Index("ix_keys_key_id", "key_id", unique=True),
        sa.Index("ix_keys_key_hash", "key_hash", unique=True),
        deleted_at_index("keys"),
    )

    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(sa.String(36))
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    role: Mapped[str] = mapped_column(sa.String(16))
    user_id: Mapped[str] = mapped_column(sa.String(36))
    name: Mapped[str] = mapped_column(sa.String(100))
    shown_part: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(sa.DateTime(timezone=True))


_KEYS = Key.__table__
_LIVE_KEYS = sa.select(*_KEYS.c).where(_KEYS.c.deleted_at.is_(None))
_KEY_BY_ID = _LIVE_KEYS.where(_KEYS.c.key_id == sa.bindparam("key_id"))
_KEYS_BY_HASH = _LIVE_KEYS.where(_KEYS.c.key_hash.in_(sa.bindparam("key_hashes", expanding=True)))
_FIRST_KEYS = _LIVE_KEYS.order_by(_KEYS.c.seq).limit(sa.bindparam("limit"))
_NEXT_KEYS = _LIVE_KEYS.where(_KEYS.c.seq > sa.bindparam("after")).order_by(_KEYS.c.seq).limit(sa.bindparam("limit"))
_TAKEN_KEY = sa.select(_KEYS.c.seq).where(
    sa.or_(_KEYS.c.key_id == sa.bindparam("key_id"), _KEYS.c.key_hash == sa.bindparam("key_hash")))


class Keys:
    """The caller keys seen through one transaction (service.Keys); rows come back as sa.Row."""

    def __init__(self, transaction: orm.Session | sa.Connection):
        self._connection = transaction.connection() if isinstance(transaction, orm.Session) else transaction

    def taken(self, key_id: str, key_hash: str) -> bool:
        """Whether any key, revoked or not, has this id or hash."""
        return self._connection.execute(_TAKEN_KEY, {"key_id": key_id, "key_hash": key_hash}).first() is not None

    def add(self, **fields: object) -> sa.Row:
        fields = {**fields, "created_at": utcnow(), "deleted_at": None}
        self._connection.execute(sa.insert(_KEYS), fields)
        return self.get(str(fields["key_id"]))

    def get(self, key_id: str) -> sa.Row | None:
        return self._connection.execute(_KEY_BY_ID, {"key_id": key_id}).one_or_none()

    def by_hashes(self, key_hashes: Sequence[str]) -> list[sa.Row]:
        return list(self._connection.execute(_KEYS_BY_HASH, {"key_hashes": list(key_hashes)}).all())

    def page(self, after: int | None, limit: int) -> list[sa.Row]:
        if after is None:
            return list(self._connection.execute(_FIRST_KEYS, {"limit": limit}).all())
        return list(self._connection.execute(_NEXT_KEYS, {"after": after, "limit": limit}).all())

    def revoke(self, key: sa.Row) -> None:
        self._connection.execute(sa.update(_KEYS).where(_KEYS.c.seq == key.seq).values(deleted_at=utcnow()))


@contextlib.contextmanager
def username_race(username: str | None) -> Iterator[None]:
    """Turns a lost race on the live-username index into USERNAME_TAKEN.

    Two writers can both pass the service's check before either commits; the
    index lets only one insert, and the other fails here instead of with INTERNAL.
    """
    try:
        yield
    except sa.exc.IntegrityError as error:
        if username is None or "username" not in str(error.orig):
            raise
        raise UsernameTaken(username) from error
