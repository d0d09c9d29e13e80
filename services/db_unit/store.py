"""The db unit's tables and queries; the only module of the unit that speaks SQLAlchemy."""

import dataclasses
import datetime
import uuid

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import request_ledger, utcnow
from services.db_unit.service import NewRecord

# 64-bit on PostgreSQL (a record per instruction adds up); SQLite's INTEGER PRIMARY KEY is already 64-bit.
BigSeq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData()


metadata = Base.metadata
request_ledger(metadata)


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (
        sa.Index("ix_records_record_id", "record_id", unique=True),
        sa.Index("ix_records_user_id_seq", "user_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigSeq, primary_key=True)
    record_id: Mapped[str] = mapped_column(sa.String(36))
    user_id: Mapped[str] = mapped_column(sa.String(128))
    chat_id: Mapped[str] = mapped_column(sa.String(128))
    instruction: Mapped[str] = mapped_column(sa.String(64))
    instruction_id: Mapped[str] = mapped_column(sa.String(128))
    outcome: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Result(Base):
    """One instruction's final result; the primary key makes the first writer win."""

    __tablename__ = "results"

    instruction_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    result: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))


_RECORDS = Record.__table__
_RESULTS = Result.__table__
# Core statements built once: an ORM select or flush costs more CPU than the query itself,
# and the result ledger is read and written on every instruction.
_INSERT_RECORD = sa.insert(_RECORDS)
_LIVE_RECORDS = (
    sa.select(*_RECORDS.c)
    .where(_RECORDS.c.user_id == sa.bindparam("user_id"), _RECORDS.c.deleted_at.is_(None))
    .order_by(_RECORDS.c.seq)
    .limit(sa.bindparam("limit"))
)
_LIVE_RECORDS_AFTER = _LIVE_RECORDS.where(_RECORDS.c.seq > sa.bindparam("after"))
_DELETE_RECORDS = (
    sa.update(_RECORDS)
    .where(_RECORDS.c.user_id == sa.bindparam("owner"), _RECORDS.c.deleted_at.is_(None))
    .values(deleted_at=sa.bindparam("now"), updated_at=sa.bindparam("now"))
)
# The first writer wins: a later insert of the same instruction id does nothing (and, on
# PostgreSQL, waits for a concurrent twin to commit), with no savepoint to set and release.
_INSERT_RESULT = {
    "sqlite": sqlite.insert(_RESULTS).on_conflict_do_nothing(index_elements=[_RESULTS.c.instruction_id]),
    "postgresql": postgresql.insert(_RESULTS).on_conflict_do_nothing(index_elements=[_RESULTS.c.instruction_id]),
}
_RESULT = sa.select(*_RESULTS.c).where(_RESULTS.c.instruction_id == sa.bindparam("instruction_id"))


@dataclasses.dataclass(frozen=True, slots=True)
class StoredRecord:
    seq: int
    record_id: str
    user_id: str
    chat_id: str
    instruction: str
    instruction_id: str
    outcome: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    deleted_at: datetime.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredResult:
    instruction_id: str
    result: bytes
    created_at: datetime.datetime


def _connection(transaction: orm.Session | sa.Connection) -> sa.Connection:
    """Core statements run on the connection: of a write session, or of a read transaction."""
    return transaction.connection() if isinstance(transaction, orm.Session) else transaction


class Records:
    """A transaction's view of the live records (service.Records)."""

    def __init__(self, transaction: orm.Session | sa.Connection):
        self._connection = _connection(transaction)

    def add(self, new: NewRecord) -> StoredRecord:
        now = utcnow()
        fields = dict(
            record_id=str(uuid.uuid4()),
            user_id=new.user_id,
            chat_id=new.chat_id,
            instruction=new.instruction,
            instruction_id=new.instruction_id,
            outcome=new.outcome,
            created_at=now,
            updated_at=now,
            deleted_at=None,
        )
        seq = self._connection.execute(_INSERT_RECORD, fields).inserted_primary_key[0]
        return StoredRecord(seq=seq, **fields)

    def page(self, user_id: str, after: int | None, limit: int) -> list[sa.Row]:
        if after is None:
            return list(self._connection.execute(_LIVE_RECORDS, {"user_id": user_id, "limit": limit}))
        return list(
            self._connection.execute(_LIVE_RECORDS_AFTER, {"user_id": user_id, "limit": limit, "after": after})
        )

    def delete_all(self, user_id: str) -> int:
        return self._connection.execute(_DELETE_RECORDS, {"owner": user_id, "now": utcnow()}).rowcount


class Results:
    """A transaction's view of the result ledger (service.Results)."""

    def __init__(self, transaction: orm.Session | sa.Connection):
        self._connection = _connection(transaction)

    def put(self, instruction_id: str, result: bytes) -> tuple[StoredResult | sa.Row, bool]:
        """Inserts the result, or returns the one a writer stored first (True when it did)."""
        fields = dict(instruction_id=instruction_id, result=result, created_at=utcnow())
        inserted = self._connection.execute(_INSERT_RESULT[self._connection.dialect.name], fields).rowcount
        if inserted:
            return StoredResult(**fields), False
        first = self.get(instruction_id)
        if first is None:  # the winner's row vanished: results are never deleted
            raise RuntimeError(f"result of instruction {instruction_id!r} neither inserted nor found")
        return first, True

    def get(self, instruction_id: str) -> sa.Row | None:
        return self._connection.execute(_RESULT, {"instruction_id": instruction_id}).one_or_none()
