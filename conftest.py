"""Fixtures every test folder shares: real PostgreSQL and RabbitMQ (testkit.backends), or SQLite, and
fresh names for tests that share one running suite."""

import uuid

import pytest

from testkit.backends import AMQP_URL, POSTGRES_URL, DatabaseTarget, drop_schemas, require_postgres, require_rabbitmq


@pytest.fixture(params=["sqlite", "postgresql"])
def database_target(request, tmp_path):
    if request.param == "sqlite":
        yield DatabaseTarget(url=f"sqlite:///{tmp_path / 'unit.db'}", schema=None)
        return
    require_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield DatabaseTarget(url=POSTGRES_URL, schema=schema)
    drop_schemas(POSTGRES_URL, [schema])


@pytest.fixture
def amqp_url():
    require_rabbitmq()
    return AMQP_URL


@pytest.fixture
def unique():
    """A fresh name with a readable prefix: tests share one suite."""
    return lambda prefix: f"{prefix}_{uuid.uuid4().hex[:10]}"
