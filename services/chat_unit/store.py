"""The chat unit's tables and the queries on them; the only module that imports SQLAlchemy."""

import datetime
import itertools
import pathlib
import types
import uuid
from collections.abc import Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import orm

from services.chat_unit.service import Chat, Message, NewMessage, Role
from services.common.db import Database, as_utc, request_ledger, utcnow
from services.common.limits import MAX_ID_CHARS
from services.common.retention import deleted_at_index, deleted_rule, ledger_rule

MIGRATIONS = pathlib.Path(__file__).resolve().parent / "migrations"

# The tail of a chat is read in batches of at most this many rows, so a caller that
# stops early (a character budget) never makes the database send the rest.
TAIL_BATCH = 500

# Integer on SQLite, where only an INTEGER PRIMARY KEY is the auto-numbered rowid.
SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData()


class ChatRow(Base):
    __tablename__ = "chats"
    __table_args__ = (deleted_at_index("chats"),)

    seq: orm.Mapped[int] = orm.mapped_column(SeqType, primary_key=True, autoincrement=True)
    chat_id: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    title: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    deleted_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))


class ChatMemberRow(Base):
    """A member user of a chat; user ids belong to the user unit, so there is no foreign key to them."""

    __tablename__ = "chat_members"
    # Leads with user_id so "chats of a user" is read by index, already in chat order.
    __table_args__ = (sa.Index("ix_chat_members_user_id_chat_seq", "user_id", "chat_seq"),)

    chat_seq: orm.Mapped[int] = orm.mapped_column(SeqType, sa.ForeignKey("chats.seq"), primary_key=True)
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(MAX_ID_CHARS), primary_key=True)
    position: orm.Mapped[int] = orm.mapped_column(sa.Integer)


class MessageRow(Base):
    __tablename__ = "messages"
    # The tail of a chat (ORDER BY seq DESC LIMIT n) is read from this index alone.
    __table_args__ = (sa.Index("ix_messages_chat_id_seq", "chat_id", "seq"),)

    seq: orm.Mapped[int] = orm.mapped_column(SeqType, primary_key=True, autoincrement=True)
    message_id: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    chat_id: orm.Mapped[str] = orm.mapped_column(sa.String(36), sa.ForeignKey("chats.chat_id"))
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(MAX_ID_CHARS))
    llm_id: orm.Mapped[str] = orm.mapped_column(sa.String(MAX_ID_CHARS))
    content: orm.Mapped[str] = orm.mapped_column(sa.Text)
    role: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))


metadata = Base.metadata
processed_requests = request_ledger(metadata)
# What the pruner deletes (services.common.retention): old request ids, and chats deleted long
# ago with their messages and members.
RETENTION_RULES = (
    ledger_rule(),
    deleted_rule("chats", key="seq", dependents=[("messages", "chat_id", "chat_id"), ("chat_members", "chat_seq", "seq")]),
)


def open_database(url: str, schema: str | None) -> Database:
    """The unit's database, migrated to the newest schema."""
    database = Database(url, schema)
    try:
        database.migrate(MIGRATIONS, metadata)
    except BaseException:
        database.dispose()
        raise
    return database


_CHATS, _MEMBERS, _MESSAGES = ChatRow.__table__, ChatMemberRow.__table__, MessageRow.__table__
# Core statements built once: building, cache-keying and loading ORM entities cost several
# times the queries themselves, and a chat's tail is read on every generation.
_LIVE_CHAT = sa.select(*_CHATS.c).where(_CHATS.c.chat_id == sa.bindparam("chat_id"), _CHATS.c.deleted_at.is_(None))
_LIVE_CHAT_LOCKED = _LIVE_CHAT.with_for_update()
_IS_LIVE = sa.select(_CHATS.c.seq).where(_CHATS.c.chat_id == sa.bindparam("chat_id"), _CHATS.c.deleted_at.is_(None))
# Whether the user is a member, on the live chat's row: no row when the chat is unknown or deleted.
_LIVE_MEMBERSHIP = (
    sa.select(_MEMBERS.c.user_id.is_not(None))
    .select_from(
        _CHATS.outerjoin(
            _MEMBERS, sa.and_(_MEMBERS.c.chat_seq == _CHATS.c.seq, _MEMBERS.c.user_id == sa.bindparam("user_id"))
        )
    )
    .where(_CHATS.c.chat_id == sa.bindparam("chat_id"), _CHATS.c.deleted_at.is_(None))
)
_MEMBERS_OF = (
    sa.select(_MEMBERS.c.chat_seq, _MEMBERS.c.user_id)
    .where(_MEMBERS.c.chat_seq.in_(sa.bindparam("chat_seqs", expanding=True)))
    .order_by(_MEMBERS.c.chat_seq, _MEMBERS.c.position)
)
_INSERT_CHAT = sa.insert(_CHATS)
_INSERT_MEMBER = sa.insert(_MEMBERS)
_INSERT_MESSAGE = sa.insert(_MESSAGES)
_UPDATE_CHAT = sa.update(_CHATS).where(_CHATS.c.seq == sa.bindparam("row_seq"))
# Touching a live chat's update time locks its row as SELECT .. FOR UPDATE would: one statement, not two.
_TOUCH_LIVE_CHAT = (
    sa.update(_CHATS)
    .where(_CHATS.c.chat_id == sa.bindparam("live_chat_id"), _CHATS.c.deleted_at.is_(None))
    .values(updated_at=sa.bindparam("updated_at"))
)
# The columns of a Message, in _message's argument order: rows are unpacked, not read by
# attribute name (three times faster per row on a page of messages).
_MESSAGE_COLUMNS = [
    _MESSAGES.c[name]
    for name in ("seq", "message_id", "chat_id", "user_id", "llm_id", "content", "role", "created_at", "updated_at")
]
_LIVE_MESSAGE = (
    sa.select(*_MESSAGE_COLUMNS)
    .join_from(_MESSAGES, _CHATS, _CHATS.c.chat_id == _MESSAGES.c.chat_id)
    .where(_MESSAGES.c.message_id == sa.bindparam("message_id"), _CHATS.c.deleted_at.is_(None))
)
_TAIL = (
    sa.select(*_MESSAGE_COLUMNS)
    .where(_MESSAGES.c.chat_id == sa.bindparam("chat_id"))
    .order_by(_MESSAGES.c.seq.desc())
    .limit(sa.bindparam("limit"))
)
_TAIL_BEFORE = _TAIL.where(_MESSAGES.c.seq < sa.bindparam("before_seq"))
# Locks in chat_id order (PostgreSQL locks the rows as the sort returns them), so two
# batches touching the same chats in different orders never wait on each other in a cycle.
_LOCK_LIVE_CHATS = (
    sa.select(_CHATS.c.seq)
    .where(_CHATS.c.chat_id.in_(sa.bindparam("chat_ids", expanding=True)), _CHATS.c.deleted_at.is_(None))
    .order_by(_CHATS.c.chat_id)
    .with_for_update()
)


class ChatStore:
    """Queries inside one transaction; the caller commits or rolls back.

    Works on a read transaction's connection (Database.reading) or a write transaction's
    session (Database.transaction, run_once); either way it runs Core statements.
    """

    def __init__(self, transaction: orm.Session | sa.Connection):
        self._connection = transaction.connection() if isinstance(transaction, orm.Session) else transaction

    def add_chat(self, title: str, user_ids: Sequence[str]) -> Chat:
        now = utcnow()
        fields = dict(chat_id=str(uuid.uuid4()), title=title, created_at=now, updated_at=now, deleted_at=None)
        seq = self._connection.execute(_INSERT_CHAT, fields).inserted_primary_key[0]
        if user_ids:
            self._connection.execute(
                _INSERT_MEMBER,
                [dict(chat_seq=seq, user_id=user_id, position=position) for position, user_id in enumerate(user_ids)],
            )
        return _chat(_Fields(seq=seq, **fields), user_ids)

    def live_chat(self, chat_id: str) -> Chat | None:
        row = self._live_row(chat_id)
        return None if row is None else self._with_members([row])[0]

    def is_live(self, chat_id: str) -> bool:
        return self._connection.execute(_IS_LIVE, {"chat_id": chat_id}).first() is not None

    def live_membership(self, chat_id: str, user_id: str) -> bool | None:
        """None when the chat is unknown or deleted, else whether user_id is one of its members."""
        row = self._connection.execute(_LIVE_MEMBERSHIP, {"chat_id": chat_id, "user_id": user_id}).first()
        return None if row is None else bool(row[0])

    def update_chat(self, chat_id: str, title: str | None) -> Chat | None:
        row = self._live_row(chat_id, lock=True)
        if row is None:
            return None
        if title is not None:
            changed = dict(title=title, updated_at=utcnow())
            self._connection.execute(_UPDATE_CHAT, {"row_seq": row.seq, **changed})
            row = _Fields(**{**row._asdict(), **changed})
        return self._with_members([row])[0]

    def delete_chat(self, chat_id: str) -> bool:
        row = self._live_row(chat_id, lock=True)
        if row is None:
            return False
        now = utcnow()
        self._connection.execute(_UPDATE_CHAT, {"row_seq": row.seq, "deleted_at": now, "updated_at": now})
        return True

    def live_chats(self, after_seq: int | None, limit: int, member_user_id: str) -> list[Chat]:
        query = sa.select(*_CHATS.c).where(_CHATS.c.deleted_at.is_(None))
        position = _CHATS.c.seq
        if member_user_id:
            query = query.join(_MEMBERS, _MEMBERS.c.chat_seq == _CHATS.c.seq).where(
                _MEMBERS.c.user_id == member_user_id
            )
            position = _MEMBERS.c.chat_seq
        if after_seq is not None:
            query = query.where(position > after_seq)
        rows = self._connection.execute(query.order_by(position).limit(limit)).all()
        return self._with_members(rows)

    def append_messages(self, chat_id: str, messages: Sequence[NewMessage]) -> list[Message] | None:
        # Touching (so locking) the chat row first orders concurrent appends to one chat, so
        # seq order is commit order, and a concurrent delete either precedes or follows.
        now = utcnow()
        if self._connection.execute(_TOUCH_LIVE_CHAT, {"live_chat_id": chat_id, "updated_at": now}).rowcount != 1:
            return None
        stored = []
        for message in messages:
            # One insert per row: the seq each row gets must follow the order given. (A batch
            # insert with sort_by_parameter_order keeps that order too, but costs more CPU.)
            fields = dict(
                message_id=str(uuid.uuid4()),
                chat_id=chat_id,
                user_id=message.user_id,
                llm_id=message.llm_id,
                content=message.content,
                role=message.role.value,
                created_at=now,
                updated_at=now,
            )
            seq = self._connection.execute(_INSERT_MESSAGE, fields).inserted_primary_key[0]
            stored.append(_message(seq, **fields))
        return stored

    def live_message(self, message_id: str) -> Message | None:
        row = self._connection.execute(_LIVE_MESSAGE, {"message_id": message_id}).one_or_none()
        return None if row is None else _message(*row)

    def newest_messages(self, chat_id: str, before_seq: int | None, limit: int) -> Iterator[Message]:
        """Messages of a chat, newest first, read from the tail of its (chat_id, seq) index."""
        while limit > 0:
            batch = min(limit, TAIL_BATCH)
            if before_seq is None:
                rows = self._connection.execute(_TAIL, {"chat_id": chat_id, "limit": batch}).all()
            else:
                rows = self._connection.execute(
                    _TAIL_BEFORE, {"chat_id": chat_id, "limit": batch, "before_seq": before_seq}
                ).all()
            yield from itertools.starmap(_message, rows)
            if len(rows) < batch:
                return
            limit -= len(rows)
            before_seq = rows[-1].seq

    def lock_live_chats(self, chat_ids: Iterable[str]) -> None:
        """Locks the live ones of these chats, as append_messages' touch would, but all in one order."""
        # SQLite runs one writer at a time (BEGIN IMMEDIATE): there is nothing to order.
        if chat_ids and self._connection.dialect.name != "sqlite":
            self._connection.execute(_LOCK_LIVE_CHATS, {"chat_ids": list(chat_ids)}).all()

    def _live_row(self, chat_id: str, lock: bool = False) -> sa.Row | None:
        query = _LIVE_CHAT_LOCKED if lock else _LIVE_CHAT
        return self._connection.execute(query, {"chat_id": chat_id}).one_or_none()

    def _with_members(self, rows: Sequence) -> list[Chat]:
        members: dict[int, list[str]] = {row.seq: [] for row in rows}
        if rows:
            found = self._connection.execute(_MEMBERS_OF, {"chat_seqs": list(members)})
            for chat_seq, user_id in found:
                members[chat_seq].append(user_id)
        return [_chat(row, members[row.seq]) for row in rows]


def tail_query(chat_id: str, before_seq: int | None, limit: int) -> sa.Select:
    """The newest `limit` messages of a chat (older than before_seq when given), newest first."""
    query = sa.select(*_MESSAGE_COLUMNS).where(_MESSAGES.c.chat_id == chat_id)
    if before_seq is not None:
        query = query.where(_MESSAGES.c.seq < before_seq)
    return query.order_by(_MESSAGES.c.seq.desc()).limit(limit)


class _Fields(types.SimpleNamespace):
    """A row this transaction wrote, read by attribute like the rows it reads."""


_ROLES = {role.value: role for role in Role}


def _chat(row: "sa.Row | _Fields", user_ids: Sequence[str]) -> Chat:
    return Chat(
        seq=row.seq,
        chat_id=row.chat_id,
        title=row.title,
        user_ids=tuple(user_ids),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def _message(
    seq: int,
    message_id: str,
    chat_id: str,
    user_id: str,
    llm_id: str,
    content: str,
    role: str,
    created_at: datetime.datetime,
    updated_at: datetime.datetime,
) -> Message:
    created = as_utc(created_at)
    # Messages are never edited: the two stamps are one value, converted once.
    updated = created if updated_at == created_at else as_utc(updated_at)
    return Message(seq, message_id, chat_id, user_id, llm_id, content, _ROLES[role], created, updated)
