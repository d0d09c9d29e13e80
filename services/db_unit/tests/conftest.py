"""Fixtures for the db unit's tests: a real server on the test's database, and a stub to call it."""

import grpc
import pytest

from llmchatlinker.db.v1 import db_service_pb2 as pb
from llmchatlinker.db.v1 import db_service_pb2_grpc as pb_grpc
from services.common.errors import error_info
from services.db_unit.config import Settings
from services.db_unit.errors import DOMAIN
from services.db_unit.server import build_server


@pytest.fixture
def settings(database_target) -> Settings:
    return Settings(address="127.0.0.1:0", database_url=database_target.url, database_schema=database_target.schema)


@pytest.fixture
def start_server(settings):
    """Starts a RecordService server on the test's database; every server started is stopped at the end."""
    started = []

    def start():
        server = build_server(settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=None)


@pytest.fixture
def connect():
    """Opens a channel to a port; every channel opened is closed at the end."""
    opened = []

    def open_channel(port: int) -> grpc.Channel:
        # Results may be 16 MiB, past the channel's default 4 MiB receive limit.
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 32 << 20)])
        opened.append(channel)
        return channel

    yield open_channel
    for channel in opened:
        channel.close()


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def channel(server, connect) -> grpc.Channel:
    return connect(server.port)


@pytest.fixture
def stub(channel) -> pb_grpc.RecordServiceStub:
    return pb_grpc.RecordServiceStub(channel)


@pytest.fixture
def record(stub):
    """Records an instruction and returns the record: record("user-1", instruction="CHAT_CREATE")."""

    def create_record(user_id: str, instruction: str = "CHAT_CREATE", **fields) -> pb.Record:
        request = pb.CreateRecordRequest(user_id=user_id, instruction=instruction, **fields)
        return stub.CreateRecord(request, timeout=10).record

    return create_record


@pytest.fixture
def fails():
    """Asserts a call fails with a status code and an ErrorInfo reason of the db domain.

    fails(grpc.StatusCode.NOT_FOUND, "RESULT_NOT_FOUND", stub.GetResult, request) returns the RpcError.
    """

    def call(code: grpc.StatusCode, reason: str, method, request) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            method(request, timeout=10)
        error = caught.value
        info = error_info(error)
        assert (error.code(), info.reason if info else None) == (code, reason), error.details()
        assert info.domain == DOMAIN
        return error

    return call
