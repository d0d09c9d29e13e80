"""The server around the rules: health, reflection, restarts, schema, settings and shutdown."""

import os
import signal
import subprocess
import sys
import pathlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from llmchatlinker.user.v1 import user_service_pb2 as pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as pb_grpc
from services.common.db import Database
from services.user_unit import service, store
from services.user_unit.config import Settings
from services.user_unit.server import SERVICE_NAME

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_health_reports_the_service_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)

    for name in (SERVICE_NAME, ""):
        response = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(channel):
    services = ProtoReflectionDescriptorDatabase(channel).get_services()

    assert SERVICE_NAME == "llmchatlinker.user.v1.UserService"
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= set(services)


def test_users_and_remembered_requests_survive_a_restart(start_server, connect):
    first = start_server()
    before = pb_grpc.UserServiceStub(connect(first.port))
    request = pb.CreateUserRequest(request_id="create-alice", username="alice")
    alice = before.CreateUser(request).user
    first.stop()

    second = start_server()
    after = pb_grpc.UserServiceStub(connect(second.port))

    assert after.GetUser(pb.GetUserRequest(user_id=alice.user_id)).user == alice
    assert after.CreateUser(request).user == alice
    assert list(after.ListUsers(pb.ListUsersRequest()).users) == [alice]


def test_migrated_schema_matches_the_models(server, settings):
    database = Database(settings.database_url, settings.database_schema)
    try:
        assert database.schema_drift(store.metadata) == []
    finally:
        database.dispose()


@pytest.mark.parametrize("request_id", ["", "race-1"])
def test_a_lost_race_for_a_username_is_already_exists(stub, create, fails, monkeypatch, request_id):
    # Stand in for a writer that committed the name between our check and our insert:
    # the check passes, and the database's partial unique index has the last word.
    create("olga")
    monkeypatch.setattr(service, "_claim_username", lambda users, username: None)

    request = pb.CreateUserRequest(request_id=request_id, username="olga")
    fails(grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN", stub.CreateUser, request)
    assert len(stub.ListUsers(pb.ListUsersRequest()).users) == 1


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("LLMCHATLINKER_HOST", raising=False)
    monkeypatch.delenv("LLMCHATLINKER_USER_UNIT_PORT", raising=False)
    monkeypatch.delenv("LLMCHATLINKER_USER_UNIT_DATABASE_SCHEMA", raising=False)
    monkeypatch.setenv("LLMCHATLINKER_USER_UNIT_DATABASE_URL", "sqlite:///users.db")

    assert Settings.from_env() == Settings("127.0.0.1:50052", "sqlite:///users.db", "user_unit")


def test_settings_name_a_missing_database_url(monkeypatch):
    monkeypatch.delenv("LLMCHATLINKER_USER_UNIT_DATABASE_URL", raising=False)

    with pytest.raises(RuntimeError, match="LLMCHATLINKER_USER_UNIT_DATABASE_URL"):
        Settings.from_env()


def test_the_unit_runs_as_a_module_and_stops_cleanly_on_sigterm(tmp_path):
    environment = dict(
        os.environ,
        LLMCHATLINKER_USER_UNIT_DATABASE_URL=f"sqlite:///{tmp_path / 'users.db'}",
        LLMCHATLINKER_USER_UNIT_PORT="0",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.user_unit"], cwd=REPO, env=environment, stderr=subprocess.PIPE, text=True
    )
    try:
        port = _port_from_log(process)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.UserServiceStub(channel)
            assert stub.CreateUser(pb.CreateUserRequest(username="alice"), timeout=10).user.username == "alice"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


def _port_from_log(process: subprocess.Popen) -> int:
    """Reads the log until the server says which port it listens on."""
    for line in process.stderr:
        if "listening on" in line:
            return int(line.rsplit("port ", 1)[1].rstrip(")\n"))
    raise AssertionError(f"the unit exited with {process.wait()} before listening")
