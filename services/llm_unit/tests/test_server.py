"""The unit as a server: request-id idempotency, races, restarts, schema, health and reflection."""

import asyncio
import os
import pathlib
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.common.db import Database
from services.llm_unit import server, store
from services.llm_unit.config import Settings
from services.llm_unit.tests.conftest import add_llm, add_provider, expect_error, running_unit, settings_for

REPO = pathlib.Path(__file__).resolve().parents[3]
SERVICE = "llmchatlinker.llm.v1.LlmService"


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


async def test_migrated_schema_matches_the_models(unit):
    assert unit.server.database.schema_drift(store.metadata) == []


async def test_migrating_twice_is_harmless(database_target):
    database = Database(database_target.url, database_target.schema)
    try:
        for _ in range(2):
            database.migrate(REPO / "services/llm_unit/migrations", store.metadata)
        assert database.schema_drift(store.metadata) == []
    finally:
        database.dispose()


async def test_health_reports_serving(unit):
    health = health_pb2_grpc.HealthStub(unit.channel)
    for name in ("", SERVICE):
        response = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(unit):
    stub = reflection_pb2_grpc.ServerReflectionStub(unit.channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    response = await call.read()
    await call.done_writing()

    names = {service.name for service in response.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def _unit_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCHATLINKER_")}
    env.update(extra)
    return env


def test_main_serves_until_sigterm(tmp_path):
    env = _unit_env(LLMCHATLINKER_LLM_UNIT_DATABASE_URL=f"sqlite:///{tmp_path / 'l.db'}",
                    LLMCHATLINKER_LLM_UNIT_PORT="0")
    process = subprocess.Popen([sys.executable, "-m", "services.llm_unit"], cwd=REPO, env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in process.stderr:
            if "on port" in line:
                port = int(line.rsplit(" ", 1)[1])
                break
        assert port, "the unit did not report its port"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE),
                                                                timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


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


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_DATABASE_URL", "sqlite:////tmp/x.db")
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_PORT", "6000")
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_GENERATION_TIMEOUT_MS", "5000")
    monkeypatch.delenv("LLMCHATLINKER_LLM_UNIT_DATABASE_SCHEMA", raising=False)

    settings = Settings.from_env()

    assert settings.address.endswith(":6000") and settings.database_url == "sqlite:////tmp/x.db"
    assert (settings.database_schema, settings.generation_timeout_ms) == ("llm_unit", 5000)
