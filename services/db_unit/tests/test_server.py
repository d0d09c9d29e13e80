"""The server around the rules: health, reflection, restarts, schema, settings and shutdown."""

import os
import pathlib
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from llmchatlinker.db.v1 import db_service_pb2 as pb
from llmchatlinker.db.v1 import db_service_pb2_grpc as pb_grpc
from services.common.db import Database
from services.db_unit import store
from services.db_unit.config import Settings
from services.db_unit.server import SERVICE_NAME

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_health_reports_the_service_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)

    for name in (SERVICE_NAME, ""):
        response = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(channel):
    services = ProtoReflectionDescriptorDatabase(channel).get_services()

    assert SERVICE_NAME == "llmchatlinker.db.v1.RecordService"
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= set(services)


def test_records_results_and_remembered_requests_survive_a_restart(start_server, connect):
    first = start_server()
    before = pb_grpc.RecordServiceStub(connect(first.port))
    create = pb.CreateRecordRequest(request_id="rec-1", user_id="user-1", instruction="CHAT_CREATE")
    created = before.CreateRecord(create).record
    before.PutResult(pb.PutResultRequest(instruction_id="ins-1", result=b"kept"))
    first.stop()

    second = start_server()
    after = pb_grpc.RecordServiceStub(connect(second.port))

    assert list(after.ListRecords(pb.ListRecordsRequest(user_id="user-1")).records) == [created]
    assert after.CreateRecord(create).record == created
    assert after.GetResult(pb.GetResultRequest(instruction_id="ins-1")).result == b"kept"


def test_migrated_schema_matches_the_models(server, settings):
    database = Database(settings.database_url, settings.database_schema)
    try:
        assert database.schema_drift(store.metadata) == []
    finally:
        database.dispose()


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("LLMCHATLINKER_HOST", raising=False)
    monkeypatch.delenv("LLMCHATLINKER_DB_UNIT_PORT", raising=False)
    monkeypatch.delenv("LLMCHATLINKER_DB_UNIT_DATABASE_SCHEMA", raising=False)
    monkeypatch.setenv("LLMCHATLINKER_DB_UNIT_DATABASE_URL", "sqlite:///records.db")

    assert Settings.from_env() == Settings("127.0.0.1:50055", "sqlite:///records.db", "db_unit")


def test_settings_name_a_missing_database_url(monkeypatch):
    monkeypatch.delenv("LLMCHATLINKER_DB_UNIT_DATABASE_URL", raising=False)

    with pytest.raises(RuntimeError, match="LLMCHATLINKER_DB_UNIT_DATABASE_URL"):
        Settings.from_env()


def test_the_unit_runs_as_a_module_and_stops_cleanly_on_sigterm(tmp_path):
    environment = dict(
        os.environ,
        LLMCHATLINKER_DB_UNIT_DATABASE_URL=f"sqlite:///{tmp_path / 'records.db'}",
        LLMCHATLINKER_DB_UNIT_PORT="0",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.db_unit"], cwd=REPO, env=environment, stderr=subprocess.PIPE, text=True
    )
    try:
        port = _port_from_log(process)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RecordServiceStub(channel)
            stored = stub.PutResult(pb.PutResultRequest(instruction_id="ins-1", result=b"r"), timeout=10)
            assert stored.already_stored is False
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
