"""The unit as a server: request-id idempotency, races, restarts, migrations and its settings."""

import asyncio
import pathlib

import grpc
import pytest

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.common.db import Database
from services.llm_unit import server, store
from services.llm_unit.config import Settings
from testkit.llm_unit import add_llm, add_provider, expect_error, running_unit, settings_for

REPO = pathlib.Path(__file__).resolve().parents[3]


async def test_repeated_request_id_is_answered_from_the_first_response(unit):
    first = await add_provider(unit.stub, name="acme", request_id="req-1")
    again = await add_provider(unit.stub, name="acme", request_id="req-1")

    assert again == first
    assert len((await unit.stub.ListProviders(pb.ListProvidersRequest())).providers) == 1


async def test_repeated_mutations_are_not_applied_twice(unit):
    provider = await add_provider(unit.stub)
    create = pb.CreateLlmRequest(request_id="llm-1", provider_id=provider.provider_id, name="m")
    llm = (await unit.stub.CreateLlm(create)).llm
    assert (await unit.stub.CreateLlm(create)).llm == llm

    rename = pb.UpdateLlmRequest(request_id="upd-1", llm_id=llm.llm_id, name="m2")
    renamed = (await unit.stub.UpdateLlm(rename)).llm
    await unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id=llm.llm_id, name="m3"))
    assert (await unit.stub.UpdateLlm(rename)).llm == renamed  # replayed, not re-applied

    delete = pb.DeleteProviderRequest(request_id="del-1", provider_id=provider.provider_id)
    await unit.stub.DeleteProvider(delete)
    await unit.stub.DeleteProvider(delete)  # replayed: no NOT_FOUND
    await expect_error(unit.stub.DeleteProvider(pb.DeleteProviderRequest(provider_id=provider.provider_id)),
                       grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND")


async def test_concurrent_creates_of_one_name_let_exactly_one_win(unit):
    results = await asyncio.gather(*(add_provider(unit.stub, name="race") for _ in range(12)),
                                   return_exceptions=True)

    winners = [r for r in results if isinstance(r, pb.Provider)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 11
    assert {e.code() for e in losers} == {grpc.StatusCode.ALREADY_EXISTS}


async def test_concurrent_calls_with_one_request_id_all_get_the_same_provider(unit):
    results = await asyncio.gather(*(add_provider(unit.stub, name="same", request_id="rid") for _ in range(8)))

    assert len({p.provider_id for p in results}) == 1


async def test_concurrent_model_creates_of_one_name_let_exactly_one_win(unit):
    provider = await add_provider(unit.stub)

    results = await asyncio.gather(*(add_llm(unit.stub, provider.provider_id, "m") for _ in range(8)),
                                   return_exceptions=True)

    assert sum(isinstance(r, pb.Llm) for r in results) == 1
    assert {r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)} == {grpc.StatusCode.ALREADY_EXISTS}


async def test_restart_keeps_the_data(database_target):
    settings = settings_for(database_target.url, database_target.schema)
    async with running_unit(settings) as first:
        provider = await add_provider(first.stub, api_key="k")
        llm = await add_llm(first.stub, provider.provider_id)

    async with running_unit(settings) as second:
        got = await second.stub.GetLlm(pb.GetLlmRequest(llm_id=llm.llm_id))

    assert got.llm == llm and got.provider == provider and got.provider.has_api_key


async def test_migrating_twice_is_harmless(database_target):
    database = Database(database_target.url, database_target.schema)
    try:
        for _ in range(2):
            database.migrate(REPO / "services/llm_unit/migrations", store.metadata)
        assert database.schema_drift(store.metadata) == []
    finally:
        database.dispose()


def test_main_fails_fast_naming_a_missing_variable(monkeypatch):
    monkeypatch.delenv("LLMCHATLINKER_LLM_UNIT_DATABASE_URL", raising=False)

    with pytest.raises(SystemExit) as exited:
        server.main()

    assert "LLMCHATLINKER_LLM_UNIT_DATABASE_URL" in str(exited.value.code)


@pytest.mark.parametrize("value", ["soon", "0"])
def test_main_rejects_a_bad_generation_timeout(monkeypatch, tmp_path, value):
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_DATABASE_URL", f"sqlite:///{tmp_path / 'l.db'}")
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_GENERATION_TIMEOUT_MS", value)

    with pytest.raises(SystemExit) as exited:
        server.main()

    assert "LLMCHATLINKER_LLM_UNIT_GENERATION_TIMEOUT_MS" in str(exited.value.code)


def test_settings_read_the_port_and_the_generation_timeout(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_DATABASE_URL", "sqlite:////tmp/x.db")
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_PORT", "6000")
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_GENERATION_TIMEOUT_MS", "5000")
    monkeypatch.delenv("LLMCHATLINKER_LLM_UNIT_DATABASE_SCHEMA", raising=False)

    settings = Settings.from_env()

    assert settings.address.endswith(":6000") and settings.database_url == "sqlite:////tmp/x.db"
    assert (settings.database_schema, settings.generation_timeout_ms) == ("llm_unit", 5000)
