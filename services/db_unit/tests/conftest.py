"""Fixtures for the db unit's tests: the shared unit fixtures (testkit.units) on RecordService."""

import pytest

from llmchatlinker.db.v1 import db_service_pb2 as pb
from llmchatlinker.db.v1 import db_service_pb2_grpc as pb_grpc
from services.db_unit.config import Settings
from services.db_unit.errors import DOMAIN
from services.db_unit.server import build_server
from testkit.units import DatabaseUnit, channel, connect, fails, server, settings, start_server, stub  # noqa: F401


@pytest.fixture
def database_unit() -> DatabaseUnit:
    return DatabaseUnit(Settings, build_server, pb_grpc.RecordServiceStub, DOMAIN)


@pytest.fixture
def record(stub):
    """Records an instruction and returns the record: record("user-1", instruction="CHAT_CREATE")."""

    def create_record(user_id: str, instruction: str = "CHAT_CREATE", **fields) -> pb.Record:
        request = pb.CreateRecordRequest(user_id=user_id, instruction=instruction, **fields)
        return stub.CreateRecord(request, timeout=10).record

    return create_record
