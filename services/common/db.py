"""Database plumbing shared by the units: engines, transactions, migrations and the request ledger.

Each unit owns its own database (its own URL; on PostgreSQL, its own schema).
"""

import contextlib
import datetime
import math
import os
import pathlib
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import event, orm
from sqlalchemy.dialects import postgresql, sqlite

from services.common.limits import MAX_ID_CHARS

MIGRATIONS_ENV = pathlib.Path(__file__).resolve().parent / "migrations"
Response = TypeVar("Response")

# A pooled PostgreSQL connection idle at least this long is pinged before use.
PING_AFTER_IDLE_SECONDS = 5.0
# ... and one older than this is replaced (servers and proxies drop long-lived connections).
POOL_RECYCLE_SECONDS = 1800
_IDLE_SINCE = "llmchatlinker_idle_since"

# Execution option that marks a connection's transaction as read-only (see Database.reading).
_READING = "llmchatlinker_reading"
# What times the statements run_on_cursor runs, by engine (metrics.watch_database sets it).
_CURSOR_TIMERS: "weakref.WeakKeyDictionary[sa.Engine, Callable[[float], None]]" = weakref.WeakKeyDictionary()


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def as_utc(moment: datetime.datetime) -> datetime.datetime:
    """SQLite hands datetimes back without a zone; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def request_ledger(metadata: sa.MetaData) -> sa.Table:
    """The table of applied request ids and their responses, in a unit's own schema."""
    return sa.Table(
        "processed_requests",
        metadata,
        sa.Column("request_id", sa.String(MAX_ID_CHARS), primary_key=True),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
        # The pruner deletes by age (services.common.retention).
        sa.Index("ix_processed_requests_created_at", "created_at"),
    )


class DatabaseUnreachable(RuntimeError):
    """A unit cannot open its database at start (wrong URL, server down, no such database or role):
    one readable line, the password hidden, instead of a retry loop or a traceback."""


# Seconds a new PostgreSQL connection may take: an unreachable host fails the start in seconds.
CONNECT_TIMEOUT_SECONDS = 10
# Connections kept for autocommitting() (the llm_unit's admissions; each batch takes one).
AUTOCOMMIT_POOL_SIZE = 2


class Database:
    """One unit's engine and session factory."""

    def __init__(self, url: str, schema: str | None = None, pool_size: int = 10):
        try:
            self.url = sa.engine.make_url(url)
            self.is_sqlite = self.url.get_backend_name() == "sqlite"
            self.schema = None if self.is_sqlite else schema
            self.engine = self._sqlite_engine() if self.is_sqlite else self._server_engine(pool_size)
            # For autocommitting(): its connections stay in autocommit, since switching a pooled
            # connection in and out of it costs more than the one-statement write it is for.
            self._autocommit_engine = (None if self.is_sqlite
                                       else self._server_engine(AUTOCOMMIT_POOL_SIZE, isolation_level="AUTOCOMMIT"))
        except sa.exc.ArgumentError as error:  # unknown scheme or driver, malformed URL
            raise DatabaseUnreachable(f"cannot use the database URL: {error}") from None
        except OSError as error:  # an SQLite file or folder that cannot be made
            raise DatabaseUnreachable(f"cannot create the database's file or folder: {error}") from None
        self._sessions = orm.sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Writers of this process queue here, each woken as the
        # one before it ends; left to SQLite's busy handler they would poll, sleeping 1, 2, 5, 10 ...
        # ms between tries, which under load costs each write milliseconds. (Other processes on
        # the same file still queue on busy_timeout.)
        self._writer = threading.RLock() if self.is_sqlite else contextlib.nullcontext()

    @property
    def shown_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def sqlite_file(self) -> pathlib.Path | None:
        """The SQLite database's file (None for PostgreSQL and an in-memory SQLite)."""
        if not self.is_sqlite or not self.url.database or self.url.database == ":memory:":
            return None
        return pathlib.Path(self.url.database)

    def _sqlite_engine(self) -> sa.Engine:
        if self.sqlite_file is not None:
            _owner_only(self.sqlite_file)
        # hide_parameters: a statement's values (provider keys, messages) stay out of error texts and logs.
        engine = sa.create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30},
                                  hide_parameters=True)

        @event.listens_for(engine, "connect")
        def on_connect(dbapi_connection, _record):
            # Let SQLAlchemy, not pysqlite, emit BEGIN (see "Serializable isolation" in SQLAlchemy's
            # SQLite docs), and use WAL so readers never wait for the writer.
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")

        @event.listens_for(engine, "begin")
        def on_begin(connection):
            # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
            # instead of one failing with "database is locked" when it upgrades its lock.
            # A read-only transaction never upgrades: a deferred BEGIN reads a WAL snapshot
            # without the lock, so reads neither wait for writers nor make them wait.
            reading = connection.get_execution_options().get(_READING, False)
            # On the driver's connection: through exec_driver_sql the BEGIN cost a third of an
            # empty transaction's CPU.
            connection.connection.driver_connection.execute("BEGIN" if reading else "BEGIN IMMEDIATE")

        return engine

    @property
    def engines(self) -> list[sa.Engine]:
        """Every engine of the database: `engine`, and on PostgreSQL autocommitting()'s."""
        return [self.engine] + ([self._autocommit_engine] if self._autocommit_engine is not None else [])

    def _server_engine(self, pool_size: int, **options) -> sa.Engine:
        connect_args: dict = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        if self.schema:
            connect_args["options"] = f"-csearch_path={self.schema}"
            # Names the unit's connections in pg_stat_activity (and lets a test cut just them).
            connect_args["application_name"] = f"llmchatlinker {self.schema}"[:63]
        engine = sa.create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size * 2,
            pool_recycle=POOL_RECYCLE_SECONDS,
            connect_args=connect_args,
            hide_parameters=True,  # errors (and so logs) never show stored values: inputs, keys
            **options,
        )

        # pool_pre_ping would cost a round trip on every checkout (most of a short read's time):
        # ping only a connection that sat idle long enough to have been cut (a server restart, an
        # idle timeout). A dead one is replaced before use; one that dies in use fails that call
        # with UNAVAILABLE (errors.database_unreachable; callers retry it) and SQLAlchemy then
        # invalidates the whole pool, as with pre-ping.
        @event.listens_for(engine, "connect")
        @event.listens_for(engine, "checkin")
        def on_idle(_dbapi_connection, record):
            record.info[_IDLE_SINCE] = time.monotonic()

        @event.listens_for(engine, "checkout")
        def on_checkout(dbapi_connection, record, _proxy):
            if time.monotonic() - record.info.get(_IDLE_SINCE, math.inf) < PING_AFTER_IDLE_SECONDS:
                return
            try:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                dbapi_connection.rollback()  # end the transaction the driver opened for the ping
            except Exception as error:  # noqa: BLE001 - any failure means: not usable
                raise sa.exc.DisconnectionError(str(error)) from error

        return engine

    @contextlib.contextmanager
    def transaction(self) -> Iterator[orm.Session]:
        """Commits on a clean exit, rolls back on an exception."""
        with self._writer, self._sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """A read-only transaction on a bare connection, for the read RPCs.

        No ORM session (its bookkeeping cost more CPU than the query on the hot reads), and
        on SQLite no write lock. Store code runs Core statements on it; nothing is written.
        """
        with self.engine.connect() as connection:
            connection.execution_options(**{_READING: True})
            with connection.begin():
                yield connection

    @contextlib.contextmanager
    def writing(self) -> Iterator[sa.Connection]:
        """A write transaction on a bare connection, for writes done with Core statements alone.

        Commits on a clean exit, rolls back on an exception, like transaction().
        """
        with self._writer, self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def autocommitting(self, reads_only: bool = False) -> Iterator[sa.Connection]:
        """For statements that each stand alone: on PostgreSQL a connection on which every statement
        is its own transaction (one round trip, where a transaction adds BEGIN and COMMIT to it); on
        SQLite a write transaction, as writing(), or for `reads_only` a read one, as reading()."""
        if self.is_sqlite:
            with self.reading() if reads_only else self.writing() as connection:
                yield connection
            return
        with self._autocommit_engine.connect() as connection:
            yield connection

    def migrate(self, versions_dir: pathlib.Path, metadata: sa.MetaData, attributes: Mapping[str, object] | None = None,
                revision: str = "head") -> None:
        """Brings the unit's schema to the newest migration (or `revision`); safe to run from several
        replicas at once. `attributes` reach the migrations as `context.config.attributes` (what a
        data migration needs, such as the llm_unit's keyring).

        Raises DatabaseUnreachable when the database cannot be opened at all."""
        try:
            self._migrate(versions_dir, metadata, attributes or {}, revision)
        except sa.exc.OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else type(error).__name__
            raise DatabaseUnreachable(f"cannot open the database {self.shown_url}: {reason}") from None

    def _migrate(self, versions_dir: pathlib.Path, metadata: sa.MetaData, attributes: Mapping[str, object],
                 revision: str) -> None:
        if self.schema:
            with self.engine.begin() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        with self.engine.begin() as connection:
            if not self.is_sqlite:
                lock_key = zlib.crc32(f"llmchatlinker:{self.schema}".encode())
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_ENV))
            config.set_main_option("path_separator", "os")
            config.set_main_option("version_locations", str(versions_dir))
            config.attributes["connection"] = connection
            config.attributes["target_metadata"] = metadata
            config.attributes.update(attributes)
            command.upgrade(config, revision)

    def schema_drift(self, metadata: sa.MetaData) -> list:
        """Differences between the migrated schema and the models; empty when they agree."""
        with self.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            return [diff for diff in compare_metadata(context, metadata) if not _is_alembic_table(diff)]

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()


# SQLite writes its -wal, -shm and -journal files with the database file's mode.
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def _owner_only(database_file: pathlib.Path) -> None:
    """Makes the SQLite file readable by its owner only (0600; its folder 0700 when made here), before
    SQLite opens it: it holds chats and sealed provider keys. Files an older version left readable
    by others are narrowed too."""
    database_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(database_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for suffix in _SQLITE_COMPANIONS:
        companion = database_file.with_name(database_file.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)


def _is_alembic_table(diff) -> bool:
    return diff[0] == "remove_table" and diff[1].name == "alembic_version"


_LEDGER = sa.table("processed_requests", sa.column("request_id"), sa.column("response"), sa.column("created_at"))
# Built once: building and cache-keying these on every mutation cost more CPU than running them.
_LEDGER_RESPONSE = sa.select(_LEDGER.c.response).where(_LEDGER.c.request_id == sa.bindparam("request_id"))
_LEDGER_INSERT = sa.insert(_LEDGER)
_LEDGER_ANSWER = sa.update(_LEDGER).where(_LEDGER.c.request_id == sa.bindparam("claimed"))
_LEDGER_RESPONSES = sa.select(_LEDGER.c.request_id, _LEDGER.c.response).where(
    _LEDGER.c.request_id.in_(sa.bindparam("request_ids", expanding=True))
)
# A claim that meets an id claimed by a concurrent twin waits for the twin's commit and then
# skips that id instead of failing: on PostgreSQL a failed insert would abort the whole batch.
_LEDGER_CLAIM_NEW = {
    name: dialect.insert(_LEDGER).on_conflict_do_nothing().returning(_LEDGER.c.request_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_LEDGER_RELEASE = sa.delete(_LEDGER).where(_LEDGER.c.request_id.in_(sa.bindparam("request_ids", expanding=True)))


def run_once(
    database: Database,
    request_id: str,
    decode: Callable[[bytes], Response],
    apply: Callable[[orm.Session], Response],
) -> Response:
    """Applies a mutation at most once per request id.

    The request id is claimed (inserted into the ledger) before the effect and its
    response written after it, all in one transaction: a retry after a crash finds
    both or neither, and a concurrent twin blocks on the ledger's primary key until
    the first commits, then fails the insert, rolls back and replays the response.
    """
    for attempt in range(2):
        try:
            with database.transaction() as session:
                if request_id:
                    connection = session.connection()
                    stored = connection.execute(_LEDGER_RESPONSE, {"request_id": request_id}).scalar_one_or_none()
                    if stored is not None:
                        return decode(stored)
                    connection.execute(
                        _LEDGER_INSERT, {"request_id": request_id, "response": b"", "created_at": utcnow()}
                    )
                response = apply(session)
                if request_id:
                    session.flush()  # apply's ORM changes go first, as when the session ran the update
                    connection.execute(
                        _LEDGER_ANSWER, {"claimed": request_id, "response": response.SerializeToString()}
                    )
                return response
        except sa.exc.IntegrityError:
            if not request_id or attempt:
                raise
    raise AssertionError("unreachable")


class BatchLedger:
    """run_once's request ledger for many request ids in one transaction (the caller commits):
    for a batch of mutations that each succeed or fail on their own."""

    def __init__(self, connection: sa.Connection, decode: Callable[[bytes], Response]):
        self._connection = connection
        self._decode = decode
        self._claimed: list[str] = []

    def claim(self, request_ids: Iterable[str]) -> dict[str, Response]:
        """Claims the ids not answered before; returns the stored responses of the others.

        Claims in sorted order, so two batches claiming overlapping ids never wait on each other
        in a cycle. An id a concurrent twin claimed is answered once the twin has committed.
        """
        ids = sorted(request_ids)
        if not ids:
            return {}
        now = utcnow()
        claim = _LEDGER_CLAIM_NEW[self._connection.dialect.name]
        rows = self._connection.execute(claim, [dict(request_id=r, response=b"", created_at=now) for r in ids])
        self._claimed = rows.scalars().all()
        # Claiming first and reading only what could not be claimed: most ids are new.
        answered = sorted(set(ids).difference(self._claimed))
        if not answered:
            return {}
        stored = self._connection.execute(_LEDGER_RESPONSES, {"request_ids": answered})
        return {request_id: self._decode(response) for request_id, response in stored}

    def settle(self, answers: Mapping[str, Response]) -> None:
        """Stores the answers to claimed ids; the other claims (of failed requests) are dropped,
        so those ids can be used again."""
        # One delete and one insert, rather than an update per answer.
        if self._claimed:
            self._connection.execute(_LEDGER_RELEASE, {"request_ids": self._claimed})
        if answers:
            now = utcnow()
            self._connection.execute(
                _LEDGER_INSERT,
                [dict(request_id=r, response=a.SerializeToString(), created_at=now) for r, a in answers.items()],
            )


def time_cursor_statements(engine: sa.Engine, took: Callable[[float], None]) -> None:
    """Has run_on_cursor report each statement's seconds on `engine` to `took` (SQLAlchemy's own
    statement events never see them)."""
    _CURSOR_TIMERS[engine] = took


def run_on_cursor(transaction: sa.Connection, statement: str, parameters: Sequence) -> list[tuple]:
    """Runs one statement (in the driver's parameter style) on the DB-API cursor of `transaction`,
    returning its rows: for the hottest statements, where SQLAlchemy's per-statement machinery costs
    several times the statement itself. Timed like any other statement when metrics are on.

    A driver error is raised as SQLAlchemy raises its own statements' (a DBAPIError, parameters
    hidden), and one that says the connection is gone invalidates it and its pool first, so that
    a lost connection is answered UNAVAILABLE (errors.database_unreachable) and not used again."""
    took = _CURSOR_TIMERS.get(transaction.engine)
    started = time.perf_counter()
    cursor = transaction.connection.driver_connection.cursor()
    try:
        cursor.execute(statement, parameters)
        return cursor.fetchall() if cursor.description is not None else []
    except transaction.dialect.loaded_dbapi.Error as error:
        # Private, but what SQLAlchemy's maintainers point raw-cursor users to (sqlalchemy
        # discussion 11681): no public call does the disconnect check, the pool's invalidation and
        # the wrapping together.
        transaction._handle_dbapi_exception(error, statement, parameters, cursor, None)
        raise  # not reached: it raises
    finally:
        cursor.close()
        if took is not None:
            took(time.perf_counter() - started)
