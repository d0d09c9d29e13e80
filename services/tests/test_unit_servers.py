"""What every unit does as a deployable server, checked on each of the four: health, reflection,
a migrated schema, settings from the environment, refusing calls once stopped, SIGTERM, and
admitting only callers with the internal token."""

import asyncio
import contextlib
import importlib
import inspect
import os
import pathlib
import re
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb
from llmchatlinker.chat.v1 import chat_service_pb2_grpc as chat_grpc
from llmchatlinker.db.v1 import db_service_pb2 as db_pb
from llmchatlinker.db.v1 import db_service_pb2_grpc as db_grpc
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb
from llmchatlinker.llm.v1 import llm_service_pb2_grpc as llm_grpc
from llmchatlinker.user.v1 import user_service_pb2 as user_pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as user_grpc
from services.common.db import Database
from services.common.errors import error_info
from testkit.backends import TEST_KEY_ENCRYPTION_KEY

REPO = pathlib.Path(__file__).resolve().parents[2]

# The service each unit serves, and the port it listens on when LLMCHATLINKER_<UNIT>_PORT is unset.
SERVICES = {
    "user_unit": ("llmchatlinker.user.v1.UserService", 50052),
    "chat_unit": ("llmchatlinker.chat.v1.ChatService", 50053),
    "llm_unit": ("llmchatlinker.llm.v1.LlmService", 50054),
    "db_unit": ("llmchatlinker.db.v1.RecordService", 50055),
}
UNITS = list(SERVICES)
TOKEN = "the-internal-token-0123456789abcdef"


def _store_something(unit: str, channel: grpc.Channel, metadata=None) -> None:
    """One call that writes to the unit's database, as its first caller would."""
    if unit == "user_unit":
        created = user_grpc.UserServiceStub(channel).CreateUser(user_pb.CreateUserRequest(username="alice"), timeout=10,
                                                                metadata=metadata)
        assert created.user.username == "alice"
    elif unit == "chat_unit":
        request = chat_pb.CreateChatRequest(title="first", user_ids=["u1"])
        assert chat_grpc.ChatServiceStub(channel).CreateChat(request, timeout=10, metadata=metadata).chat.title == "first"
    elif unit == "llm_unit":
        request = llm_pb.CreateProviderRequest(name="acme", api_endpoint="http://127.0.0.1:9/v1/chat/completions",
                                               kind=llm_pb.PROVIDER_KIND_OPENAI)
        assert llm_grpc.LlmServiceStub(channel).CreateProvider(request, timeout=10,
                                                               metadata=metadata).provider.name == "acme"
    else:
        stored = db_grpc.RecordServiceStub(channel).PutResult(
            db_pb.PutResultRequest(instruction_id="ins-1", result=b"r"), timeout=10, metadata=metadata)
        assert stored.already_stored is False


def _module(unit: str, name: str):
    return importlib.import_module(f"services.{unit}.{name}")


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


@contextlib.asynccontextmanager
async def running(unit: str, database_target, **options):
    """The unit on port 0 on the test's database (thread-pool or asyncio, as the unit is built)."""
    # The llm_unit on PostgreSQL needs its key-encryption key given.
    keys = {"key_encryption_keys": (TEST_KEY_ENCRYPTION_KEY,)} if unit == "llm_unit" else {}
    settings = _module(unit, "config").Settings(
        address="127.0.0.1:0", database_url=database_target.url, database_schema=database_target.schema,
        **keys, **options)
    server = _module(unit, "server").build_server(settings)
    await _maybe_await(server.start())
    try:
        yield server
    finally:
        await _maybe_await(server.stop(grace=None))


@pytest.fixture
def clear_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("LLMCHATLINKER_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("unit", UNITS)
async def test_health_reports_the_service_serving(unit, database_target):
    async with running(unit, database_target) as server, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in (SERVICES[unit][0], ""):
            response = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, name


@pytest.mark.parametrize("unit", UNITS)
async def test_reflection_lists_the_service(unit, database_target):
    assert _module(unit, "server").SERVICE_NAME == SERVICES[unit][0]
    async with running(unit, database_target) as server, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=10)
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        response = await call.read()
        await call.done_writing()

    names = {service.name for service in response.list_services_response.service}
    assert {SERVICES[unit][0], "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


@pytest.mark.parametrize("unit", UNITS)
async def test_a_unit_with_the_token_set_refuses_calls_without_it_and_still_answers_health(unit, database_target):
    refused = [(None, "INTERNAL_CREDENTIAL_MISSING"),
               ((("authorization", "Bearer the-wrong-token-0123456789abcdef"),), "INTERNAL_CREDENTIAL_INVALID"),
               ((("authorization", TOKEN),), "INTERNAL_CREDENTIAL_INVALID")]  # the token, without its scheme
    async with running(unit, database_target, internal_token=TOKEN) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            for metadata, reason in refused:
                with pytest.raises(grpc.RpcError) as caught:  # in a thread: llm_unit serves on this loop
                    await asyncio.to_thread(_store_something, unit, channel, metadata)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
                assert error_info(caught.value).reason == reason

            health = health_pb2_grpc.HealthStub(channel).Check
            answer = await asyncio.to_thread(health, health_pb2.HealthCheckRequest(service=SERVICES[unit][0]), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo
            listed = await asyncio.to_thread(
                lambda: next(reflection(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)))
            assert SERVICES[unit][0] in {service.name for service in listed.list_services_response.service}

            await asyncio.to_thread(_store_something, unit, channel, (("authorization", f"Bearer {TOKEN}"),))


async def test_a_generation_without_the_token_is_refused_before_it_starts(database_target):
    async with running("llm_unit", database_target, internal_token=TOKEN) as server, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = llm_grpc.LlmServiceStub(channel).GenerateReply(llm_pb.GenerateReplyRequest(llm_id="any"), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            async for _ in call:
                pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "INTERNAL_CREDENTIAL_MISSING"


@pytest.mark.parametrize("unit", UNITS)
async def test_migrated_schema_matches_the_models(unit, database_target):
    async with running(unit, database_target):
        database = Database(database_target.url, database_target.schema)
        try:
            assert database.schema_drift(_module(unit, "store").metadata) == []
        finally:
            database.dispose()


@pytest.mark.parametrize("unit", UNITS)
async def test_a_stopped_server_refuses_calls(unit, database_target):
    async with running(unit, database_target) as server:
        port = server.port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.RpcError):
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


@pytest.mark.parametrize("unit", UNITS)
def test_settings_come_from_the_environment(unit, clear_environment, monkeypatch):
    monkeypatch.setenv(f"LLMCHATLINKER_{unit.upper()}_DATABASE_URL", "sqlite:///unit.db")
    settings_class = _module(unit, "config").Settings

    settings = settings_class.from_env()

    assert settings == settings_class(f"127.0.0.1:{SERVICES[unit][1]}", "sqlite:///unit.db", unit)


@pytest.mark.parametrize("unit", UNITS)
def test_settings_name_a_missing_database_url(unit, clear_environment):
    with pytest.raises(RuntimeError, match=f"LLMCHATLINKER_{unit.upper()}_DATABASE_URL"):
        _module(unit, "config").Settings.from_env()


@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_runs_as_a_module_and_stops_cleanly_on_sigterm(unit, tmp_path):
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LLMCHATLINKER_")}
    environment[f"LLMCHATLINKER_{unit.upper()}_DATABASE_URL"] = f"sqlite:///{tmp_path / 'unit.db'}"
    environment[f"LLMCHATLINKER_{unit.upper()}_PORT"] = "0"
    process = subprocess.Popen([sys.executable, "-m", f"services.{unit}"], cwd=REPO, env=environment,
                               stderr=subprocess.PIPE, text=True)
    try:
        port = _port_from_log(process)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = health_pb2.HealthCheckRequest(service=SERVICES[unit][0])
            assert health_pb2_grpc.HealthStub(channel).Check(check, timeout=10).status == \
                health_pb2.HealthCheckResponse.SERVING
            _store_something(unit, channel)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


@pytest.mark.parametrize("unit", UNITS)
def test_a_unit_beyond_loopback_without_a_credential_refuses_to_start_in_one_line(unit, tmp_path):
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LLMCHATLINKER_")}
    environment.update({"LLMCHATLINKER_HOST": "0.0.0.0", f"LLMCHATLINKER_{unit.upper()}_PORT": "0",
                        f"LLMCHATLINKER_{unit.upper()}_DATABASE_URL": f"sqlite:///{tmp_path / 'unit.db'}"})

    run = subprocess.run([sys.executable, "-m", f"services.{unit}"], cwd=REPO, env=environment, capture_output=True,
                         text=True, timeout=60)

    assert run.returncode != 0
    assert run.stderr.startswith(f"{unit}: listening on 0.0.0.0:0 (LLMCHATLINKER_HOST), beyond loopback, with no "
                                 "internal credential: "), run.stderr
    assert run.stderr.count("\n") == 1 and "LLMCHATLINKER_INTERNAL_TOKEN" in run.stderr
    assert not (tmp_path / "unit.db").exists()  # refused before its database was touched


def _port_from_log(process: subprocess.Popen) -> int:
    """Reads the log until the unit says which port it listens on."""
    for line in process.stderr:
        if found := re.search(r"on port (\d+)", line):
            return int(found[1])
    raise AssertionError(f"the unit exited with {process.wait()} before listening")
