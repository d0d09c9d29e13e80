"""Fixtures every test folder shares: real PostgreSQL and RabbitMQ, or SQLite.

In CI (CI set) an unreachable PostgreSQL or RabbitMQ fails the test; on a
machine without them the tests that need them are skipped and the rest run.
"""

import dataclasses
import os
import socket
import uuid

import pytest

POSTGRES_URL = os.environ.get(
    "LLMCHATLINKER_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("LLMCHATLINKER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
IN_CI = bool(os.environ.get("CI"))


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
    message = f"{name} is not reachable at {host}:{port}"
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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_target(request, tmp_path):
    if request.param == "sqlite":
        yield DatabaseTarget(url=f"sqlite:///{tmp_path / 'unit.db'}", schema=None)
        return
    require_postgres()
    import sqlalchemy as sa

    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield DatabaseTarget(url=POSTGRES_URL, schema=schema)
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture
def amqp_url():
    require_rabbitmq()
    return AMQP_URL
