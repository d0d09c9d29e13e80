"""The db unit's tables and queries; the only module of the unit that speaks SQLAlchemy."""

import datetime
import uuid

import sqlalchemy as sa
from sqlalchemy import orm
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


class Records:
    """A transaction's view of the live records (service.Records)."""

    def __init__(self, session: orm.Session):
        self._session = session

    def add(self, new: NewRecord) -> Record:
        now = utcnow()
        record = Record(
            record_id=str(uuid.uuid4()),
            user_id=new.user_id,
            chat_id=new.chat_id,
            instruction=new.instruction,
            instruction_id=new.instruction_id,
            outcome=new.outcome,
            created_at=now,
            updated_at=now,
        )
        self._session.add(record)
        self._session.flush()
        return record

    def page(self, user_id: str, after: int | None, limit: int) -> list[Record]:
        query = (
            sa.select(Record)
            .where(Record.user_id == user_id, Record.deleted_at.is_(None))
            .order_by(Record.seq)
            .limit(limit)
        )
        if after is not None:
            query = query.where(Record.seq > after)
        return list(self._session.scalars(query))

    def delete_all(self, user_id: str) -> int:
        now = utcnow()
        deleted = self._session.execute(
            sa.update(Record)
            .where(Record.user_id == user_id, Record.deleted_at.is_(None))
            .values(deleted_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return deleted.rowcount


class Results:
    """A transaction's view of the result ledger (service.Results)."""

    def __init__(self, session: orm.Session):
        self._session = session

    def put(self, instruction_id: str, result: bytes) -> tuple[Result, bool]:
        """Inserts the result, or returns the one a writer stored first (True when it did)."""
        row = Result(instruction_id=instruction_id, result=result, created_at=utcnow())
        try:
            # A savepoint, so that losing the race on the primary key leaves the transaction
            # usable for reading the winner back (PostgreSQL aborts the whole transaction otherwise).
            with self._session.begin_nested():
                self._session.add(row)
        except sa.exc.IntegrityError:
            first = self.get(instruction_id)
            if first is None:
                raise
            return first, True
        return row, False

    def get(self, instruction_id: str) -> Result | None:
        return self._session.get(Result, instruction_id)
