"""The real PostgreSQL and RabbitMQ the tests use: where they are, what a test does when one is
down, and the clean-up of what a test made on them.

In CI (CI set) an unreachable PostgreSQL or RabbitMQ fails the test; on a machine without them the
tests that need them are skipped and the rest run.
"""

import contextlib
import dataclasses
import os
import socket
from collections.abc import Iterable

import pytest

POSTGRES_URL = os.environ.get(
    "LLMCHATLINKER_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("LLMCHATLINKER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
IN_CI = bool(os.environ.get("CI"))
# The llm_unit's key-encryption key on PostgreSQL, where it must be given (on SQLite the unit keeps
# its own beside the database file). Fixed, so a unit restarted on the same schema reads its keys.
TEST_KEY_ENCRYPTION_KEY = "dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzJieXRlcyE="


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fails in CI, skips elsewhere, when a real service the test needs is down."""
    if _reachable(host, port):
        return
    unavailable(f"{name} is not reachable at {host}:{port}")


def unavailable(message: str) -> None:
    """A real service (or what a test needs to set it up) is missing: a failure in CI, a skip elsewhere."""
    if IN_CI:
        pytest.fail(message + " (CI requires it)")
    pytest.skip(message)  # not CI: a machine without the service runs the embedded defaults only


def require_postgres() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)


def require_rabbitmq() -> None:
    require_service("RabbitMQ", "127.0.0.1", 5672)


@dataclasses.dataclass(frozen=True)
class DatabaseTarget:
    """Where a unit under test keeps its tables: a URL and, on PostgreSQL, a fresh schema."""

    url: str
    schema: str | None


def drop_schemas(url: str, schemas: Iterable[str]) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            for schema in schemas:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        engine.dispose()


def cut_connections(target: DatabaseTarget) -> int:
    """Ends, server-side, every PostgreSQL connection of the unit using `target` (named by its schema
    in pg_stat_activity), as a server restart or an idle timeout would: how many were cut."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(target.url)
    try:
        with engine.connect() as connection:
            return len(connection.execute(sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": f"llmchatlinker {target.schema}"}).all())
    finally:
        engine.dispose()


def delete_queues(url: str, names: Iterable[str]) -> None:
    """Deletes the queues a test declared; a broker already gone leaves nothing to delete."""
    import pika

    with contextlib.suppress(pika.exceptions.AMQPError):
        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            for name in names:
                with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                    connection.channel().queue_delete(name)
        finally:
            connection.close()
