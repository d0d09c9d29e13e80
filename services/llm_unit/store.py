"""The LLM unit's tables and queries; the only module that imports SQLAlchemy. Functions never commit."""

import dataclasses
import datetime
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.common.db import Database, as_utc, request_ledger, run_on_cursor, run_once, utcnow
from services.common.errors import DomainError
from services.common.retention import deleted_at_index, deleted_rule, ledger_rule, window_rule
from services.llm_unit import errors, limits, service

Response = TypeVar("Response")
LIVE = sa.text("deleted_at IS NULL")


class Base(orm.DeclarativeBase):
    pass


metadata = Base.metadata
request_ledger(metadata)
# What the pruner deletes (services.common.retention): old request ids, models deleted long ago,
# and providers deleted long ago (with their models, deleted with them), their keys with them.
RETENTION_RULES = (
    ledger_rule(),
    deleted_rule("llms"),
    deleted_rule("providers", dependents=[("llms", "provider_id", "id")]),
    # A month's counter is in use for up to 31 days after its start; usage records are kept (they
    # are the usage report).
    window_rule("usage_counters", "window_start", days=62),
)


class ProviderRow(Base):
    __tablename__ = "providers"
    __table_args__ = (
        # A name is unique among live providers only: a deleted provider's name can be reused.
        sa.Index("uq_providers_live_name", "name", unique=True, sqlite_where=LIVE, postgresql_where=LIVE),
        deleted_at_index("providers"),
    )

    seq: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    api_endpoint: orm.Mapped[str] = orm.mapped_column(sa.String(2000))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    # A Fernet token (services/llm_unit/keyring.py), never the key itself.
    sealed_api_key: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    # Generations at once per llm_unit replica (0: no limit), and how many may wait for a slot.
    max_in_flight: orm.Mapped[int] = orm.mapped_column(sa.Integer, server_default="0")
    max_waiting: orm.Mapped[int] = orm.mapped_column(sa.Integer, server_default="100")
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    deleted_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))


class LlmRow(Base):
    __tablename__ = "llms"
    __table_args__ = (
        sa.Index("uq_llms_live_provider_name", "provider_id", "name", unique=True,
                 sqlite_where=LIVE, postgresql_where=LIVE),
        sa.Index("ix_llms_provider_seq", "provider_id", "seq"),
        deleted_at_index("llms"),
    )

    seq: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    provider_id: orm.Mapped[str] = orm.mapped_column(sa.String(36), sa.ForeignKey("providers.id"))
    name: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    context_max_messages: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    context_max_chars: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    # Ids of the models tried, in order, when this one's provider fails before the first token.
    fallback_llm_ids: orm.Mapped[list] = orm.mapped_column(sa.JSON, server_default="[]")
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    deleted_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))


class UsageRow(Base):
    """One generation that produced a reply (written in batches, usage.py)."""

    __tablename__ = "usage_records"
    __table_args__ = (sa.Index("ix_usage_records_ended_at", "ended_at"),)

    seq: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    ended_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    chat_id: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    llm_id: orm.Mapped[str] = orm.mapped_column(sa.String(36))
    provider_id: orm.Mapped[str] = orm.mapped_column(sa.String(36))
    prompt_tokens: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    completion_tokens: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    estimated: orm.Mapped[bool] = orm.mapped_column(sa.Boolean)
    time_to_first_token_ms: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    duration_ms: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    attempts: orm.Mapped[int] = orm.mapped_column(sa.Integer)


class UserLimitsRow(Base):
    """A user's own limits; NULL: the suite's default."""

    __tablename__ = "user_limits"

    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(128), primary_key=True)
    requests_per_minute: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    tokens_per_day: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    tokens_per_month: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True))


class UsageCounterRow(Base):
    """What a user has used in one window: generations in a minute, tokens in a day or a month."""

    __tablename__ = "usage_counters"

    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(128), primary_key=True)
    window: orm.Mapped[str] = orm.mapped_column(sa.String(8), primary_key=True)
    window_start: orm.Mapped[datetime.datetime] = orm.mapped_column(sa.DateTime(timezone=True), primary_key=True)
    amount: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)


_LLMS, _PROVIDERS, _USAGE = LlmRow.__table__, ProviderRow.__table__, UsageRow.__table__
_LIMITS, _COUNTERS = UserLimitsRow.__table__, UsageCounterRow.__table__
_OWN_LIMITS = sa.select(_LIMITS.c.user_id, _LIMITS.c.requests_per_minute, _LIMITS.c.tokens_per_day,
                        _LIMITS.c.tokens_per_month).where(_LIMITS.c.user_id.in_(sa.bindparam("user_ids",
                                                                                            expanding=True)))
# The tokens users have spent, for their budgets: read for many users at once (user ids, then the
# day's and the month's start), on the DB-API cursor (through Core: several times the CPU).
_SPENT_SQL = ('SELECT user_id, "window", amount FROM usage_counters WHERE user_id {users}'
              ' AND (("window" = \'day\' AND window_start = {day})'
              ' OR ("window" = \'month\' AND window_start = {month}))')
_PG_SPENT = _SPENT_SQL.format(users="= ANY(%s)", day="%s", month="%s")
# Takes `share` units of a user's minute (parameters: user id, minute start, share, rate): counted
# only if the whole share fits under the rate; a row comes back when it was taken. Run on the DB-API
# cursor: through SQLAlchemy Core it cost four times the CPU.
_TAKE_SHARE_SQL = ('INSERT INTO usage_counters (user_id, "window", window_start, amount)'
                   ' VALUES ({0}, \'minute\', {1}, {2})'
                   ' ON CONFLICT (user_id, "window", window_start)'
                   ' DO UPDATE SET amount = usage_counters.amount + {2} WHERE usage_counters.amount + {2} <= {3}'
                   ' RETURNING amount')
_SQLITE_TAKE_SHARE = _TAKE_SHARE_SQL.format(*(f"?{n}" for n in range(1, 5)))
# On PostgreSQL it is prepared once per connection and run in autocommit (admissions use
# Database.autocommitting()): one round trip, no BEGIN or COMMIT. It is committed without waiting
# for the disk: were PostgreSQL itself to crash, the last fraction of a second of shares taken could
# be lost, and a user given a few more generations than the rate in that minute.
_PG_TAKE_SHARE = "llmchatlinker_take_rate_share"
_PG_PREPARE_TAKE_SHARE = (f"PREPARE {_PG_TAKE_SHARE} (text, timestamptz, bigint, bigint) AS "
                          + _TAKE_SHARE_SQL.format("$1", "$2", "$3", "$4"))
_PG_RUN_TAKE_SHARE = f"SET LOCAL synchronous_commit TO OFF; EXECUTE {_PG_TAKE_SHARE} (%s, %s, %s, %s)"
# The shares of many users in one statement (arrays of user ids, minute starts, units, rates); the
# rows come in user order, so that replicas taking at once lock them in the same order.
_PG_TAKE_SHARES_TOGETHER = (
    "SET LOCAL synchronous_commit TO OFF;"
    " WITH asks AS (SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::bigint[], %s::bigint[])"
    " AS ask(user_id, window_start, units, rate))"
    ' INSERT INTO usage_counters (user_id, "window", window_start, amount)'
    " SELECT user_id, 'minute', window_start, units FROM asks WHERE units <= rate ORDER BY user_id, window_start"
    ' ON CONFLICT (user_id, "window", window_start)'
    " DO UPDATE SET amount = usage_counters.amount + EXCLUDED.amount"
    " WHERE usage_counters.amount + EXCLUDED.amount <= (SELECT rate FROM asks"
    " WHERE asks.user_id = EXCLUDED.user_id AND asks.window_start = EXCLUDED.window_start)"
    " RETURNING user_id, window_start")
# GenerateReply runs this once per generation: selecting columns rather than ORM
# entities costs about half as much CPU (the GIL the event loop also needs).
_LLM_WITH_PROVIDER = (
    sa.select(*(c.label(f"llm_{c.name}") for c in _LLMS.c), *(c.label(f"provider_{c.name}") for c in _PROVIDERS.c))
    .join_from(_LLMS, _PROVIDERS, _PROVIDERS.c.id == _LLMS.c.provider_id)
    .where(_LLMS.c.id == sa.bindparam("llm_id"), _LLMS.c.deleted_at.is_(None), _PROVIDERS.c.deleted_at.is_(None))
)
_LIVE_PROVIDER = sa.select(*_PROVIDERS.c).where(
    _PROVIDERS.c.id == sa.bindparam("provider_id"), _PROVIDERS.c.deleted_at.is_(None)
)


def mutate(
    database: Database,
    request_id: str,
    decode: Callable[[bytes], Response],
    apply: Callable[[orm.Session], Response],
    conflict: DomainError | None = None,
) -> Response:
    """run_once, with a unique-index race lost to a concurrent writer reported as `conflict`.

    The IntegrityError must leave `apply` untouched so that run_once can replay a
    concurrent twin with the same request id; what is left over is a name clash.
    """
    try:
        return run_once(database, request_id, decode, apply)
    except sa.exc.IntegrityError:
        if conflict is None:
            raise
        raise conflict from None


# Providers.

def create_provider(session: orm.Session, fields: service.NewProvider) -> service.Provider:
    _check_provider_name_free(session, fields.name)
    now = utcnow()
    row = ProviderRow(id=str(uuid.uuid4()), name=fields.name, api_endpoint=fields.api_endpoint,
                      kind=fields.kind.value, sealed_api_key=fields.sealed_api_key, max_in_flight=fields.max_in_flight,
                      max_waiting=fields.max_waiting, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return _provider(row)


def update_provider(session: orm.Session, provider_id: str, changes: service.ProviderChanges) -> service.Provider:
    row = _live_provider(session, provider_id)
    service.check_key_follows_endpoint(row.api_endpoint, row.sealed_api_key is not None, changes)
    if changes.name is not None and changes.name != row.name:
        _check_provider_name_free(session, changes.name)
        row.name = changes.name
    if changes.api_endpoint is not None:
        row.api_endpoint = changes.api_endpoint
    if changes.kind is not None:
        row.kind = changes.kind.value
    if changes.replace_api_key:
        row.sealed_api_key = changes.sealed_api_key
    if changes.max_in_flight is not None:
        row.max_in_flight = changes.max_in_flight
    if changes.max_waiting is not None:
        row.max_waiting = changes.max_waiting
    if session.is_modified(row):
        row.updated_at = utcnow()
    session.flush()
    return _provider(row)


def delete_provider(session: orm.Session, provider_id: str) -> None:
    """Soft-deletes the provider and its live models."""
    row = _live_provider(session, provider_id)
    now = utcnow()
    row.deleted_at = now
    session.execute(
        sa.update(LlmRow).where(LlmRow.provider_id == row.id, LlmRow.deleted_at.is_(None)).values(deleted_at=now)
    )
    session.flush()


def get_provider(connection: sa.Connection, provider_id: str) -> service.Provider:
    row = connection.execute(_LIVE_PROVIDER, {"provider_id": provider_id}).one_or_none()
    if row is None:
        raise errors.provider_not_found(provider_id)
    return _provider(row)


def list_providers(
    connection: sa.Connection, after: int | None, limit: int
) -> tuple[list[service.Provider], int | None]:
    query = sa.select(*_PROVIDERS.c).where(_PROVIDERS.c.deleted_at.is_(None))
    rows, next_position = _page(connection, query, _PROVIDERS.c.seq, after, limit)
    return [_provider(row) for row in rows], next_position


def reseal_api_keys(connection: sa.Connection, reseal: Callable[[str], str | None]) -> tuple[int, int]:
    """Seals every stored key again with `reseal` (None: it cannot); (resealed, unreadable).

    Each row is written only if its key is still the one read, so a key set meanwhile (through
    another replica) is never replaced by an older one."""
    table = _PROVIDERS
    rows = connection.execute(sa.select(table.c.id, table.c.sealed_api_key)
                              .where(table.c.sealed_api_key.is_not(None))).all()
    resealed = left = 0
    for provider_id, sealed in rows:
        fresh = reseal(sealed)
        if fresh is None:
            left += 1
            continue
        written = connection.execute(sa.update(table).where(table.c.id == provider_id, table.c.sealed_api_key == sealed)
                                     .values(sealed_api_key=fresh))
        resealed += written.rowcount
    return resealed, left


# Models.

def create_llm(session: orm.Session, provider_id: str, fields: service.NewLlm) -> service.Llm:
    # The row lock orders this against a concurrent DeleteProvider (PostgreSQL; SQLite's
    # BEGIN IMMEDIATE already serialises writers), so no live model outlives its provider.
    provider = _live_provider(session, provider_id, lock=True)
    _check_llm_name_free(session, provider.id, fields.name)
    now = utcnow()
    llm_id = str(uuid.uuid4())
    _check_fallbacks_live(session, llm_id, fields.fallback_llm_ids)
    row = LlmRow(id=llm_id, provider_id=provider.id, name=fields.name,
                 context_max_messages=fields.context_max_messages, context_max_chars=fields.context_max_chars,
                 fallback_llm_ids=list(fields.fallback_llm_ids), created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return _llm(row)


def update_llm(session: orm.Session, llm_id: str, changes: service.LlmChanges) -> service.Llm:
    row = _live_llm(session, llm_id)
    if changes.name is not None and changes.name != row.name:
        _check_llm_name_free(session, row.provider_id, changes.name)
        row.name = changes.name
    if changes.context_max_messages is not None:
        row.context_max_messages = changes.context_max_messages
    if changes.context_max_chars is not None:
        row.context_max_chars = changes.context_max_chars
    if changes.fallback_llm_ids is not None and list(changes.fallback_llm_ids) != list(row.fallback_llm_ids or []):
        _check_fallbacks_live(session, row.id, changes.fallback_llm_ids)
        row.fallback_llm_ids = list(changes.fallback_llm_ids)
    if session.is_modified(row):
        row.updated_at = utcnow()
    session.flush()
    return _llm(row)


def delete_llm(session: orm.Session, llm_id: str) -> None:
    _live_llm(session, llm_id).deleted_at = utcnow()
    session.flush()


def get_llm(connection: sa.Connection, llm_id: str) -> tuple[service.Llm, service.Provider]:
    """A live model and its provider (live too: deleting a provider deletes its models)."""
    row = connection.execute(_LLM_WITH_PROVIDER, {"llm_id": llm_id}).mappings().one_or_none()
    if row is None:
        raise errors.llm_not_found(llm_id)
    return _llm(_Prefixed(row, "llm_")), _provider(_Prefixed(row, "provider_"))


def list_llms(
    connection: sa.Connection, provider_id: str, after: int | None, limit: int
) -> tuple[list[service.Llm], int | None]:
    query = sa.select(*_LLMS.c).where(_LLMS.c.deleted_at.is_(None))
    if provider_id:
        query = query.where(_LLMS.c.provider_id == get_provider(connection, provider_id).provider_id)
    rows, next_position = _page(connection, query, _LLMS.c.seq, after, limit)
    return [_llm(row) for row in rows], next_position


# Usage.

def insert_usage(connection: sa.Connection, records: list[service.Usage]) -> None:
    connection.execute(sa.insert(_USAGE), [dataclasses.asdict(record) for record in records])


def usage_summaries(
    connection: sa.Connection, grouping: service.Grouping, start: datetime.datetime | None,
    end: datetime.datetime | None, after: str | None, limit: int,
) -> tuple[list[service.UsageSummary], str | None]:
    """Sums per key of `grouping`, ordered by key, from the key after `after`; and the last key when
    a next page exists."""
    key = _USAGE.c[grouping.value]
    query = sa.select(
        key.label("key"), sa.func.count().label("generations"),
        sa.func.sum(_USAGE.c.prompt_tokens).label("prompt_tokens"),
        sa.func.sum(_USAGE.c.completion_tokens).label("completion_tokens"),
        sa.func.sum(sa.case((_USAGE.c.estimated, 1), else_=0)).label("estimated_generations"),
        sa.func.avg(_USAGE.c.time_to_first_token_ms).label("mean_time_to_first_token_ms"),
        sa.func.sum(_USAGE.c.duration_ms).label("duration_ms"),
    ).group_by(key).order_by(key).limit(limit + 1)
    if start is not None:
        query = query.where(_USAGE.c.ended_at >= start)
    if end is not None:
        query = query.where(_USAGE.c.ended_at < end)
    if after is not None:
        query = query.where(key > after)
    rows = connection.execute(query).all()
    summaries = [service.UsageSummary(
        key=row.key, generations=row.generations, prompt_tokens=int(row.prompt_tokens),
        completion_tokens=int(row.completion_tokens), estimated_generations=int(row.estimated_generations),
        mean_time_to_first_token_ms=round(row.mean_time_to_first_token_ms), duration_ms=int(row.duration_ms),
    ) for row in rows[:limit]]
    return summaries, (summaries[-1].key if len(rows) > limit else None)


# Limits.

def set_user_limits(session: orm.Session, user_id: str, own: limits.OwnLimits) -> None:
    row = session.get(UserLimitsRow, user_id)
    if row is None:
        row = UserLimitsRow(user_id=user_id)
        session.add(row)
    row.requests_per_minute, row.tokens_per_day, row.tokens_per_month = dataclasses.astuple(own)
    row.updated_at = utcnow()
    session.flush()


def get_users_limits(connection: sa.Connection, user_ids: Sequence[str]) -> list[limits.OwnLimits]:
    """Each user's own limits, in the order asked (none of their own: all None)."""
    found = {user_id: limits.OwnLimits(*own) for user_id, *own in connection.execute(_OWN_LIMITS,
                                                                                      {"user_ids": list(user_ids)})}
    return [found.get(user_id, limits.OwnLimits()) for user_id in user_ids]


def take_rate_shares(connection: sa.Connection,
                     asks: Sequence[tuple[str, datetime.datetime, int, int]]) -> list[int]:
    """For each (user id, minute start, rate, share) in order: the units of that minute taken for the
    user (counted in the database), never past the rate: the share, else 1 while the rate has room,
    else 0 (the rate is used up). The increments are atomic and conditional, so replicas taking at
    once never take more than the rate between them."""
    postgres = connection.dialect.name == "postgresql"
    # PostgreSQL: whole shares in one statement for all; SQLite: each ask's share on its own.
    taken = _take_whole_shares_together(connection, asks) if postgres else {}
    stored = _window_start_as_stored(connection.dialect)

    def take(user_id: str, minute: datetime.datetime, units: int, rate: int) -> bool:
        if postgres:
            return bool(run_on_cursor(connection, _PG_RUN_TAKE_SHARE, (user_id, minute, units, rate)))
        return bool(run_on_cursor(connection, _SQLITE_TAKE_SHARE, (user_id, stored(minute), units, rate)))

    if postgres and not connection.info.get(_PG_TAKE_SHARE) and len(taken) < len(asks):
        run_on_cursor(connection, _PG_PREPARE_TAKE_SHARE, ())
        connection.info[_PG_TAKE_SHARE] = True
    outcomes = []
    for position, (user_id, minute, rate, share) in enumerate(asks):
        if position in taken:
            outcomes.append(taken[position])
        elif not postgres and share > 1 and take(user_id, minute, share, rate):
            outcomes.append(share)
        else:  # close to the rate: one at a time, so that the last units go to the asks in order
            outcomes.append(1 if take(user_id, minute, 1, rate) else 0)
    return outcomes


def _take_whole_shares_together(connection: sa.Connection,
                                asks: Sequence[tuple[str, datetime.datetime, int, int]]) -> dict[int, int]:
    """PostgreSQL: one statement for every user of `asks`, each taking a share plus one unit for each
    further ask of theirs (at most the rate), where all of it fits under the rate. Returns the units
    by ask position for the users who got them: a user's first ask holds the share, the next ones one
    each; asks past the rate are left out."""
    positions: dict[tuple[str, datetime.datetime], list[int]] = {}
    for position, (user_id, minute, _rate, _share) in enumerate(asks):
        positions.setdefault((user_id, minute), []).append(position)
    wanted = {}  # (user id, minute) -> (units, rate)
    for key, at in positions.items():
        _, _, rate, share = asks[at[0]]
        wanted[key] = (min(rate, share + len(at) - 1), rate)
    columns = [list(column) for column in zip(*((user_id, minute, units, rate)
                                                for (user_id, minute), (units, rate) in wanted.items()))]
    got = run_on_cursor(connection, _PG_TAKE_SHARES_TOGETHER, columns)
    taken = {}
    for key in got:
        units = wanted[key][0]
        served = positions[key][:units]  # a rate smaller than the asks: the first ones, one each
        taken[served[0]] = units - (len(served) - 1)
        taken.update(dict.fromkeys(served[1:], 1))
    return taken


def get_tokens_spent(connection: sa.Connection, asks: Sequence[tuple[str, datetime.datetime, datetime.datetime]]
                     ) -> list[tuple[int, int]]:
    """For each (user id, day start, month start): the tokens the user has spent that day and month;
    one statement for the asks of the same day (all of them but at midnight)."""
    by_day: dict[tuple[datetime.datetime, datetime.datetime], set[str]] = {}
    for user_id, day, month in asks:
        by_day.setdefault((day, month), set()).add(user_id)
    postgres = connection.dialect.name == "postgresql"
    stored = _window_start_as_stored(connection.dialect)
    amounts: dict[tuple[str, str, datetime.datetime], int] = {}
    for (day, month), user_ids in by_day.items():
        if postgres:
            rows = run_on_cursor(connection, _PG_SPENT, (list(user_ids), day, month))
        else:
            in_list = f"IN ({', '.join('?' * len(user_ids))})"
            rows = run_on_cursor(connection, _SPENT_SQL.format(users=in_list, day="?", month="?"),
                                 (*user_ids, stored(day), stored(month)))
        for user_id, window, amount in rows:
            amounts[(user_id, window, day if window == limits.Window.DAY.value else month)] = amount
    return [(amounts.get((user_id, limits.Window.DAY.value, day), 0),
             amounts.get((user_id, limits.Window.MONTH.value, month), 0)) for user_id, day, month in asks]


_WINDOW_STARTS: dict[tuple[str, str], Callable] = {}


def _window_start_as_stored(dialect: sa.Dialect) -> Callable:
    """A window start as the column's type stores it (SQLite: text), so the admission's statements
    match rows written through Core; built once per dialect."""
    key = (dialect.name, dialect.driver)
    convert = _WINDOW_STARTS.get(key)
    if convert is None:
        column_type = _COUNTERS.c.window_start.type.dialect_impl(dialect)
        convert = _WINDOW_STARTS[key] = column_type.bind_processor(dialect) or (lambda value: value)
    return convert


def add_tokens(connection: sa.Connection, totals: dict) -> None:
    """Adds tokens to the (user, window, window start) counters of `totals` (limits.token_totals), in
    one statement executed for all (in key order, so concurrent writers lock rows in the same order)."""
    if not totals:
        return
    statement = _dialect_insert(connection)(_COUNTERS)
    statement = statement.on_conflict_do_update(
        index_elements=[_COUNTERS.c.user_id, _COUNTERS.c.window, _COUNTERS.c.window_start],
        set_={"amount": _COUNTERS.c.amount + statement.excluded.amount})
    connection.execute(statement, [
        {"user_id": user_id, "window": window.value, "window_start": start, "amount": tokens}
        for (user_id, window, start), tokens in sorted(totals.items(), key=lambda item: (item[0][0], item[0][1].value))
    ])


def any_user_limits(connection: sa.Connection) -> bool:
    """Whether any user has limits of their own (else, with no defaults, no generation is limited)."""
    return connection.execute(sa.select(_LIMITS.c.user_id).limit(1)).first() is not None


def _dialect_insert(connection: sa.Connection):
    return sqlite_insert if connection.dialect.name == "sqlite" else postgresql_insert


# Helpers.

def _page(connection: sa.Connection, query: sa.Select, seq: sa.Column, after: int | None, limit: int):
    """Keyset paging on seq: one row more than asked tells whether a next page exists."""
    if after is not None:
        query = query.where(seq > after)
    rows = connection.execute(query.order_by(seq).limit(limit + 1)).all()
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].seq
    return rows, None


def _live_provider(session: orm.Session, provider_id: str, lock: bool = False) -> ProviderRow:
    query = sa.select(ProviderRow).where(ProviderRow.id == provider_id, ProviderRow.deleted_at.is_(None))
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise errors.provider_not_found(provider_id)
    return row


def _live_llm(session: orm.Session, llm_id: str) -> LlmRow:
    row = session.scalars(
        sa.select(LlmRow).where(LlmRow.id == llm_id, LlmRow.deleted_at.is_(None))
    ).one_or_none()
    if row is None:
        raise errors.llm_not_found(llm_id)
    return row


def _check_fallbacks_live(session: orm.Session, llm_id: str, fallback_llm_ids: tuple[str, ...]) -> None:
    """Each fallback is a live model other than the model itself. One deleted later is skipped when
    generating, not removed from the list."""
    service.check_fallbacks(llm_id, fallback_llm_ids)
    if not fallback_llm_ids:
        return
    live = set(session.scalars(sa.select(LlmRow.id).where(LlmRow.id.in_(fallback_llm_ids), LlmRow.deleted_at.is_(None))))
    for fallback_id in fallback_llm_ids:
        if fallback_id not in live:
            raise errors.llm_not_found(fallback_id)


def _check_provider_name_free(session: orm.Session, name: str) -> None:
    taken = session.scalar(
        sa.select(ProviderRow.seq).where(ProviderRow.name == name, ProviderRow.deleted_at.is_(None))
    )
    if taken is not None:
        raise errors.provider_name_taken(name)


def _check_llm_name_free(session: orm.Session, provider_id: str, name: str) -> None:
    taken = session.scalar(
        sa.select(LlmRow.seq).where(LlmRow.provider_id == provider_id, LlmRow.name == name,
                                    LlmRow.deleted_at.is_(None))
    )
    if taken is not None:
        raise errors.llm_name_taken(name)


class _Prefixed:
    """Attribute access to one table's labelled columns of a joined row."""

    def __init__(self, row, prefix: str) -> None:
        self._row = row
        self._prefix = prefix

    def __getattr__(self, name: str):
        return self._row[self._prefix + name]


def _provider(row: ProviderRow | _Prefixed) -> service.Provider:
    return service.Provider(provider_id=row.id, name=row.name, api_endpoint=row.api_endpoint,
                            kind=service.Kind(row.kind), sealed_api_key=row.sealed_api_key,
                            created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at),
                            max_in_flight=row.max_in_flight, max_waiting=row.max_waiting)


def _llm(row: LlmRow | _Prefixed) -> service.Llm:
    return service.Llm(llm_id=row.id, name=row.name, provider_id=row.provider_id,
                       context_max_messages=row.context_max_messages, context_max_chars=row.context_max_chars,
                       created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at),
                       fallback_llm_ids=tuple(row.fallback_llm_ids or ()))
