"""Bounded storage: each unit deletes what it no longer needs to keep, in small batches, in the background.

Two ages, suite-wide settings:
- the ledgers (each unit's request ledger, db_unit's result ledger) keep an id for
  LLMCHATLINKER_RETENTION_DAYS (default 7): an id replayed after that runs again;
- soft-deleted rows (users, chats with their members and messages, providers, models, records)
  are purged LLMCHATLINKER_DELETED_RETENTION_DAYS (default 30) after their deletion.
0 keeps them for good; LLMCHATLINKER_PRUNE_INTERVAL_SECONDS (default 600) sets how often.

Each batch is its own short transaction deleting at most BATCH_ROWS rows, with a pause between
batches, so a unit's own traffic (and, on SQLite, its write lock) waits at most one batch.
Replicas of a unit may prune at once: a row two of them delete is simply deleted once.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
import threading
from collections.abc import Sequence

import sqlalchemy as sa

from services.common.config import Retention
from services.common.db import Database, utcnow

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
# Between two batches: the unit's own transactions go first.
PAUSE_SECONDS = 0.05

LEDGER = "ledger"
DELETED = "deleted"
WINDOW = "window"


@dataclasses.dataclass(frozen=True)
class Rule:
    """Rows of `table` whose `age_column` is older than the `kind`'s retention go, by `key`.

    `dependents` are (table, column) pairs holding the key (or `dependent_key`'s value) of a row
    that goes: their rows go first, in the same transaction (a chat's messages and members).
    """

    table: str
    age_column: str
    key: str
    kind: str
    dependents: Sequence[tuple[str, str, str]] = ()  # (table, its column, the column of `table` it holds)
    # Days kept whatever the settings say (kind WINDOW): rows still in use until then.
    days: int = 0


def deleted_at_index(table: str) -> sa.Index:
    """The index the pruner finds a table's long-deleted rows by: of deleted rows only, so live
    rows' writes do not pay for it."""
    deleted = sa.text("deleted_at IS NOT NULL")
    return sa.Index(f"ix_{table}_deleted_at", "deleted_at", postgresql_where=deleted, sqlite_where=deleted)


def ledger_rule(table: str = "processed_requests", key: str = "request_id") -> Rule:
    return Rule(table, "created_at", key, LEDGER)


def window_rule(table: str, start_column: str, days: int) -> Rule:
    """Rows of windows that started over `days` ago (counters of a rate or a budget): past use.
    The key is the start itself: every row of an old start is old."""
    return Rule(table, start_column, start_column, WINDOW, days=days)


def deleted_rule(table: str, key: str = "seq", dependents: Sequence[tuple[str, str, str]] = ()) -> Rule:
    return Rule(table, "deleted_at", key, DELETED, tuple(dependents))


class Pruner:
    """Runs `rules` against `database` every `retention.interval_seconds` on a thread of its own."""

    def __init__(self, database: Database, rules: Sequence[Rule], retention: Retention):
        self._database = database
        self._rules = list(rules)
        self._retention = retention
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Pruner":
        if self._rules and (self._retention.ledger_days or self._retention.deleted_days):
            self._thread = threading.Thread(target=self._run, name="pruner", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        # The first pass soon after start, at a random moment so replicas started together spread.
        wait = random.uniform(0.1, 0.2) * self._retention.interval_seconds
        while not self._stopping.wait(wait):
            try:
                self.prune()
            except Exception:  # noqa: BLE001 - a failed pass (database away) is tried again next time
                log.warning("pruning failed; trying again in %d s", self._retention.interval_seconds, exc_info=True)
            wait = self._retention.interval_seconds

    def prune(self, now: datetime.datetime | None = None) -> dict[str, int]:
        """One pass of every rule; returns the rows deleted per table."""
        now = now or utcnow()
        deleted: dict[str, int] = {}
        for rule in self._rules:
            days = rule.days or (self._retention.ledger_days if rule.kind == LEDGER else self._retention.deleted_days)
            if not days:
                continue
            count = self._prune_rule(rule, now - datetime.timedelta(days=days))
            if count:
                deleted[rule.table] = count
        if deleted:
            log.info("pruned %s", ", ".join(f"{count} from {table}" for table, count in deleted.items()))
        return deleted

    def _prune_rule(self, rule: Rule, cutoff: datetime.datetime) -> int:
        table = _table(rule.table, rule.key, *(held for _, _, held in rule.dependents), age_column=rule.age_column)
        old = (sa.select(*dict.fromkeys([table.c[rule.key], *(table.c[held] for _, _, held in rule.dependents)]))
               .where(table.c[rule.age_column] < cutoff).limit(BATCH_ROWS))
        total = 0
        while not self._stopping.is_set():
            with self._database.writing() as connection:
                rows = connection.execute(old).mappings().all()
                for dependent, column, held in rule.dependents:
                    values = sorted({row[held] for row in rows})
                    dependents = _table(dependent, column)
                    if values:
                        connection.execute(sa.delete(dependents).where(dependents.c[column].in_(values)))
                keys = [row[rule.key] for row in rows]
                if keys:
                    connection.execute(sa.delete(table).where(table.c[rule.key].in_(keys)))
            total += len(rows)
            if len(rows) < BATCH_ROWS:
                return total
            self._stopping.wait(PAUSE_SECONDS)
        return total


def _table(name: str, *columns: str, age_column: str = "") -> sa.TableClause:
    """A lightweight table of the unit's schema (the connection's search path names it)."""
    typed = [sa.column(age_column, sa.DateTime(timezone=True))] if age_column else []
    return sa.table(name, *typed, *(sa.column(column) for column in dict.fromkeys(columns) if column != age_column))
