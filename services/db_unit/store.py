"""The db unit's tables and queries; the only module of the unit that speaks SQLAlchemy."""

import dataclasses
import datetime
import uuid
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import request_ledger, run_on_cursor, utcnow
from services.common.limits import MAX_ID_CHARS
from services.common.retention import deleted_at_index, deleted_rule, ledger_rule
from services.db_unit.service import NewRecord

# 64-bit on PostgreSQL (a record per instruction adds up); SQLite's INTEGER PRIMARY KEY is already 64-bit.
BigSeq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData()


metadata = Base.metadata
request_ledger(metadata)
# What the pruner deletes (services.common.retention): old request ids and results, and records
# deleted long ago.
RETENTION_RULES = (
    ledger_rule(),
    ledger_rule("results", key="instruction_id"),
    ledger_rule("deliveries", key="instruction_id"),
    deleted_rule("records"),
)


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (
        sa.Index("ix_records_record_id", "record_id", unique=True),
        sa.Index("ix_records_user_id_seq", "user_id", "seq"),
        deleted_at_index("records"),
    )

    seq: Mapped[int] = mapped_column(BigSeq, primary_key=True)
    record_id: Mapped[str] = mapped_column(sa.String(36))
    user_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS))
    chat_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS))
    instruction: Mapped[str] = mapped_column(sa.String(64))
    instruction_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS))
    outcome: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Result(Base):
    """One instruction's final result; the primary key makes the first writer win."""

    __tablename__ = "results"
    # The pruner deletes by age (services.common.retention).
    __table_args__ = (sa.Index("ix_results_created_at", "created_at"),)

    instruction_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS), primary_key=True)
    result: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    # What the request was (the orchestrator's digest of it); NULL on rows stored before it was kept.
    request_digest: Mapped[bytes | None] = mapped_column(sa.LargeBinary)


class Delivery(Base):
    """How many deliveries of an instruction ended without its result stored (the poison count)."""

    __tablename__ = "deliveries"
    __table_args__ = (sa.Index("ix_deliveries_created_at", "created_at"),)

    instruction_id: Mapped[str] = mapped_column(sa.String(MAX_ID_CHARS), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))


_RECORDS = Record.__table__
_RESULTS = Result.__table__
_DELIVERIES = Delivery.__table__
# One statement on both dialects: insert the first count, or add one to it, and read it back.
_COUNT_DELIVERY = {
    name: dialect.insert(_DELIVERIES)
    .on_conflict_do_update(index_elements=[_DELIVERIES.c.instruction_id],
                           set_={"count": _DELIVERIES.c.count + 1})
    .returning(_DELIVERIES.c.count)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
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


class StoredResult(NamedTuple):
    instruction_id: str
    result: bytes
    created_at: datetime.datetime
    request_digest: bytes = b""


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


# The result ledger is read and written on every instruction, and SQLAlchemy's execution layer
# cost more CPU than these statements themselves: they run as SQL text on the DBAPI cursor of the
# transaction that server.py opened. The first writer wins: inserting a result under an id that
# has one does nothing (on PostgreSQL, after waiting for a concurrent twin to commit), RETURNING
# names the rows inserted, and the stored results of the others are read back after.
_RESULT_COLUMNS = "instruction_id, result, created_at, request_digest"


class _Ledger:
    """The ledger's SQL for one dialect, with SQLAlchemy's own conversions of the column values:
    rows written here and through the Result model read the same."""

    def __init__(self, dialect: sa.Dialect):
        def same(value):
            return value

        time_type = _RESULTS.c.created_at.type.dialect_impl(dialect)
        self.bind_time = time_type.bind_processor(dialect) or same
        self._read_time = time_type.result_processor(dialect, None) or same
        self._read_result = _RESULTS.c.result.type.dialect_impl(dialect).result_processor(dialect, None) or same

    def stored(self, row: tuple) -> StoredResult:
        digest = b"" if row[3] is None else self._read_result(row[3])
        return StoredResult(row[0], self._read_result(row[1]), self._read_time(row[2]), digest)


class _SqliteLedger(_Ledger):
    # SQLite has no arrays: the text has a row of placeholders per entry (the sqlite3 module
    # keeps the prepared statement of each recent size).
    def insert(self, new: dict[str, bytes], digests: Mapping[str, bytes],
               now: datetime.datetime) -> tuple[str, list]:
        now = self.bind_time(now)
        values = [value for instruction_id, result in new.items()
                  for value in (instruction_id, result, now, digests.get(instruction_id, b""))]
        rows = ", ".join(["(?, ?, ?, ?)"] * len(new))
        return (
            f"INSERT INTO results ({_RESULT_COLUMNS}) VALUES {rows} "
            "ON CONFLICT (instruction_id) DO NOTHING RETURNING instruction_id"
        ), values

    def select(self, instruction_ids: Sequence[str]) -> tuple[str, Sequence[str]]:
        marks = ", ".join("?" * len(instruction_ids))
        return f"SELECT {_RESULT_COLUMNS} FROM results WHERE instruction_id IN ({marks})", instruction_ids


class _PostgresLedger(_Ledger):
    # A batch of any size is one fixed text over arrays. Rows go in sorted by id, so batches that
    # share ids wait on each other's uncommitted rows in one order and never deadlock. The
    # read-back is a statement of its own: in READ COMMITTED it sees a twin that committed while
    # the insert waited, which the insert's snapshot does not.
    _INSERT = (
        f"INSERT INTO results ({_RESULT_COLUMNS}) "
        "SELECT batch.instruction_id, batch.result, %s, batch.request_digest "
        "FROM unnest(%s::varchar[], %s::bytea[], %s::bytea[]) AS batch (instruction_id, result, request_digest) "
        "ORDER BY batch.instruction_id "
        "ON CONFLICT (instruction_id) DO NOTHING RETURNING instruction_id"
    )
    _SELECT = f"SELECT {_RESULT_COLUMNS} FROM results WHERE instruction_id = ANY(%s)"

    def insert(self, new: dict[str, bytes], digests: Mapping[str, bytes],
               now: datetime.datetime) -> tuple[str, tuple]:
        return self._INSERT, (self.bind_time(now), list(new), list(new.values()),
                              [digests.get(instruction_id, b"") for instruction_id in new])

    def select(self, instruction_ids: Sequence[str]) -> tuple[str, tuple]:
        return self._SELECT, (list(instruction_ids),)


_LEDGER_TYPES = {"sqlite": _SqliteLedger, "postgresql": _PostgresLedger}
_ledgers: dict[tuple[str, str], _Ledger] = {}


def _ledger(dialect: sa.Dialect) -> _Ledger:
    """The dialect's ledger, built on first use: the conversions come from a live dialect."""
    key = (dialect.name, dialect.driver)
    ledger = _ledgers.get(key)
    if ledger is None:
        ledger = _ledgers[key] = _LEDGER_TYPES[dialect.name](dialect)
    return ledger


class Results:
    """A transaction's view of the result ledger (service.Results)."""

    def __init__(self, transaction: sa.Connection):
        self._transaction = transaction
        self._ledger = _ledger(transaction.dialect)

    def put(self, new: dict[str, bytes], digests: Mapping[str, bytes] = {}) -> dict[str, StoredResult]:  # noqa: B006
        """Stores each result (with its request's digest) whose instruction has none stored;
        returns the stored results of the others."""
        inserted = {row[0] for row in self._run(*self._ledger.insert(new, digests, utcnow()))}
        if len(inserted) == len(new):
            return {}
        others = [instruction_id for instruction_id in new if instruction_id not in inserted]
        stored = {found.instruction_id: found for found in self.get(others)}
        if len(stored) != len(others):  # a winner's row vanished: only the pruner deletes, days later
            raise RuntimeError(f"results of {len(others) - len(stored)} instructions neither inserted nor found")
        return stored

    def get(self, instruction_ids: Sequence[str]) -> list[StoredResult]:
        """The stored results among the ids, in any order."""
        return list(map(self._ledger.stored, self._run(*self._ledger.select(instruction_ids))))

    def _run(self, statement: str, parameters: Sequence) -> list[tuple]:
        return run_on_cursor(self._transaction, statement, parameters)


def count_delivery(connection: sa.Connection, instruction_id: str) -> int:
    """Counts one more unfinished delivery of the instruction; returns the count."""
    statement = _COUNT_DELIVERY[connection.dialect.name]
    return connection.execute(statement, {"instruction_id": instruction_id, "count": 1,
                                          "created_at": utcnow()}).scalar_one()
