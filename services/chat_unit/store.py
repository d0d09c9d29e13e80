"""The chat unit's tables and the queries on them; the only module that imports SQLAlchemy."""

import datetime
import pathlib
import uuid
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import orm

from services.chat_unit.service import Chat, Message, NewMessage, Role
from services.common.db import Database, as_utc, request_ledger, utcnow

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
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(128), primary_key=True)
    position: orm.Mapped[int] = orm.mapped_column(sa.Integer)


class MessageRow(Base):
    __tablename__ = "messages"
    # The tail of a chat (ORDER BY seq DESC LIMIT n) is read from this index alone.
    __table_args__ = (sa.Index("ix_messages_chat_id_seq", "chat_id", "seq"),)

    seq: orm.Mapped[int] = orm.mapped_column(SeqType, primary_key=True, autoincrement=True)
    message_id: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    chat_id: orm.Mapped[str] = orm.mapped_column(sa.String(36), sa.ForeignKey("chats.chat_id"))
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    llm_id: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    content: orm.Mapped[str] = orm.mapped_column(sa.Text)
    role: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))


metadata = Base.metadata
processed_requests = request_ledger(metadata)


def open_database(url: str, schema: str | None) -> Database:
    """The unit's database, migrated to the newest schema."""
    database = Database(url, schema)
    try:
        database.migrate(MIGRATIONS, metadata)
    except BaseException:
        database.dispose()
        raise
    return database


class ChatStore:
    """Queries inside one transaction; the caller commits or rolls back."""

    def __init__(self, session: orm.Session):
        self._session = session

    def add_chat(self, title: str, user_ids: Sequence[str]) -> Chat:
        now = utcnow()
        row = ChatRow(chat_id=str(uuid.uuid4()), title=title, created_at=now, updated_at=now)
        self._session.add(row)
        self._session.flush()
        self._session.add_all(
            ChatMemberRow(chat_seq=row.seq, user_id=user_id, position=position)
            for position, user_id in enumerate(user_ids)
        )
        self._session.flush()
        return _chat(row, user_ids)

    def live_chat(self, chat_id: str) -> Chat | None:
        row = self._live_row(chat_id)
        return None if row is None else self._with_members([row])[0]

    def is_live(self, chat_id: str) -> bool:
        return self._live_row(chat_id) is not None

    def update_chat(self, chat_id: str, title: str | None) -> Chat | None:
        row = self._live_row(chat_id, lock=True)
        if row is None:
            return None
        if title is not None:
            row.title = title
            row.updated_at = utcnow()
        return self._with_members([row])[0]

    def delete_chat(self, chat_id: str) -> bool:
        row = self._live_row(chat_id, lock=True)
        if row is None:
            return False
        row.deleted_at = row.updated_at = utcnow()
        return True

    def live_chats(self, after_seq: int | None, limit: int, member_user_id: str) -> list[Chat]:
        query = sa.select(ChatRow).where(ChatRow.deleted_at.is_(None))
        position = ChatRow.seq
        if member_user_id:
            query = query.join(ChatMemberRow, ChatMemberRow.chat_seq == ChatRow.seq).where(
                ChatMemberRow.user_id == member_user_id
            )
            position = ChatMemberRow.chat_seq
        if after_seq is not None:
            query = query.where(position > after_seq)
        rows = self._session.scalars(query.order_by(position).limit(limit)).all()
        return self._with_members(rows)

    def append_messages(self, chat_id: str, messages: Sequence[NewMessage]) -> list[Message] | None:
        # Locking the chat row first orders concurrent appends to one chat, so seq
        # order is commit order, and a concurrent delete either precedes or follows.
        chat = self._live_row(chat_id, lock=True)
        if chat is None:
            return None
        now = utcnow()
        chat.updated_at = now
        rows = [
            MessageRow(
                message_id=str(uuid.uuid4()),
                chat_id=chat_id,
                user_id=message.user_id,
                llm_id=message.llm_id,
                content=message.content,
                role=message.role.value,
                created_at=now,
                updated_at=now,
            )
            for message in messages
        ]
        for row in rows:
            # One flush per row: the seq each row gets must follow the order given.
            self._session.add(row)
            self._session.flush()
        return [_message(row) for row in rows]

    def live_message(self, message_id: str) -> Message | None:
        row = self._session.scalars(
            sa.select(MessageRow)
            .join(ChatRow, ChatRow.chat_id == MessageRow.chat_id)
            .where(MessageRow.message_id == message_id, ChatRow.deleted_at.is_(None))
        ).one_or_none()
        return None if row is None else _message(row)

    def newest_messages(self, chat_id: str, before_seq: int | None, limit: int) -> Iterator[Message]:
        """Messages of a chat, newest first, read from the tail of its (chat_id, seq) index."""
        while limit > 0:
            rows = self._session.scalars(tail_query(chat_id, before_seq, min(limit, TAIL_BATCH))).all()
            yield from (_message(row) for row in rows)
            if len(rows) < min(limit, TAIL_BATCH):
                return
            limit -= len(rows)
            before_seq = rows[-1].seq

    def _live_row(self, chat_id: str, lock: bool = False) -> ChatRow | None:
        query = sa.select(ChatRow).where(ChatRow.chat_id == chat_id, ChatRow.deleted_at.is_(None))
        if lock:
            query = query.with_for_update()
        return self._session.scalars(query).one_or_none()

    def _with_members(self, rows: Sequence[ChatRow]) -> list[Chat]:
        members: dict[int, list[str]] = {row.seq: [] for row in rows}
        if rows:
            found = self._session.execute(
                sa.select(ChatMemberRow.chat_seq, ChatMemberRow.user_id)
                .where(ChatMemberRow.chat_seq.in_(members))
                .order_by(ChatMemberRow.chat_seq, ChatMemberRow.position)
            )
            for chat_seq, user_id in found:
                members[chat_seq].append(user_id)
        return [_chat(row, members[row.seq]) for row in rows]


def tail_query(chat_id: str, before_seq: int | None, limit: int) -> sa.Select:
    """The newest `limit` messages of a chat (older than before_seq when given), newest first."""
    query = sa.select(MessageRow).where(MessageRow.chat_id == chat_id)
    if before_seq is not None:
        query = query.where(MessageRow.seq < before_seq)
    return query.order_by(MessageRow.seq.desc()).limit(limit)


def _chat(row: ChatRow, user_ids: Sequence[str]) -> Chat:
    return Chat(
        seq=row.seq,
        chat_id=row.chat_id,
        title=row.title,
        user_ids=tuple(user_ids),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def _message(row: MessageRow) -> Message:
    return Message(
        seq=row.seq,
        message_id=row.message_id,
        chat_id=row.chat_id,
        user_id=row.user_id,
        llm_id=row.llm_id,
        content=row.content,
        role=Role(row.role),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )
