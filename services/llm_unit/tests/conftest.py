"""Fixtures of the llm unit's tests: the unit in-process (testkit.llm_unit), the stand-in provider,
and a count of the models read from the database."""

import pytest

from services.llm_unit import store
from testkit import LlmServer
from testkit.llm_unit import running_unit, settings_for


@pytest.fixture
async def unit(database_target):
    """The unit on SQLite and on PostgreSQL (for CRUD tests)."""
    async with running_unit(settings_for(database_target.url, database_target.schema)) as running:
        yield running


@pytest.fixture
async def sqlite_unit(tmp_path):
    """The unit on SQLite only (for generation tests)."""
    async with running_unit(settings_for(f"sqlite:///{tmp_path / 'unit.db'}")) as running:
        yield running


@pytest.fixture
def model_reads(monkeypatch) -> list[str]:
    """The ids of every model read from the database (store.get_llm), in order."""
    reads = []
    read = store.get_llm

    def counted(connection, llm_id):
        reads.append(llm_id)
        return read(connection, llm_id)

    monkeypatch.setattr(store, "get_llm", counted)
    return reads


@pytest.fixture
async def provider_server():
    async with LlmServer() as server:
        yield server
