"""Fixtures for the user unit's tests: a real server on the test's database, and a stub to call it."""

import grpc
import pytest

from llmchatlinker.user.v1 import user_service_pb2 as pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as pb_grpc
from services.common.errors import error_info
from services.user_unit.config import Settings
from services.user_unit.errors import DOMAIN
from services.user_unit.server import build_server


@pytest.fixture
def settings(database_target) -> Settings:
    return Settings(address="127.0.0.1:0", database_url=database_target.url, database_schema=database_target.schema)


@pytest.fixture
def start_server(settings):
    """Starts a UserService server on the test's database; every server started is stopped at the end."""
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
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
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
def stub(channel) -> pb_grpc.UserServiceStub:
    return pb_grpc.UserServiceStub(channel)


@pytest.fixture
def create(stub):
    """Creates a user and returns it: create("alice", display_name="Alice")."""

    def create_user(username: str, **fields) -> pb.User:
        return stub.CreateUser(pb.CreateUserRequest(username=username, **fields), timeout=10).user

    return create_user


@pytest.fixture
def fails():
    """Asserts a call fails with a status code and an ErrorInfo reason of the user domain.

    fails(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", stub.GetUser, request) returns the RpcError.
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
