"""What every unit does as a deployable server, checked on each of the four: health, reflection,
a migrated schema, settings from the environment, refusing calls once stopped, and SIGTERM."""

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


def _store_something(unit: str, channel: grpc.Channel) -> None:
    """One call that writes to the unit's database, as its first caller would."""
    if unit == "user_unit":
        created = user_grpc.UserServiceStub(channel).CreateUser(user_pb.CreateUserRequest(username="alice"), timeout=10)
        assert created.user.username == "alice"
    elif unit == "chat_unit":
        request = chat_pb.CreateChatRequest(title="first", user_ids=["u1"])
        assert chat_grpc.ChatServiceStub(channel).CreateChat(request, timeout=10).chat.title == "first"
    elif unit == "llm_unit":
        request = llm_pb.CreateProviderRequest(name="acme", api_endpoint="http://127.0.0.1:9/v1/chat/completions",
                                               kind=llm_pb.PROVIDER_KIND_OPENAI)
        assert llm_grpc.LlmServiceStub(channel).CreateProvider(request, timeout=10).provider.name == "acme"
    else:
        stored = db_grpc.RecordServiceStub(channel).PutResult(
            db_pb.PutResultRequest(instruction_id="ins-1", result=b"r"), timeout=10)
        assert stored.already_stored is False


def _module(unit: str, name: str):
    return importlib.import_module(f"services.{unit}.{name}")


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


@contextlib.asynccontextmanager
async def running(unit: str, database_target):
    """The unit on port 0 on the test's database (thread-pool or asyncio, as the unit is built)."""
    # The llm_unit on PostgreSQL needs its key-encryption key given.
    keys = {"key_encryption_keys": (TEST_KEY_ENCRYPTION_KEY,)} if unit == "llm_unit" else {}
    settings = _module(unit, "config").Settings(
        address="127.0.0.1:0", database_url=database_target.url, database_schema=database_target.schema, **keys)
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


def _port_from_log(process: subprocess.Popen) -> int:
    """Reads the log until the unit says which port it listens on."""
    for line in process.stderr:
        if found := re.search(r"on port (\d+)", line):
            return int(found[1])
    raise AssertionError(f"the unit exited with {process.wait()} before listening")
