"""Fixtures for the user unit's tests: the shared unit fixtures (testkit.units) on UserService."""

import pytest

from llmchatlinker.user.v1 import user_service_pb2 as pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as pb_grpc
from services.user_unit.config import Settings
from services.user_unit.errors import DOMAIN
from services.user_unit.server import build_server
from testkit.units import DatabaseUnit, channel, connect, fails, server, settings, start_server, stub  # noqa: F401


@pytest.fixture
def database_unit() -> DatabaseUnit:
    return DatabaseUnit(Settings, build_server, pb_grpc.UserServiceStub, DOMAIN)


@pytest.fixture
def create(stub):
    """Creates a user and returns it: create("alice", display_name="Alice")."""

    def create_user(username: str, **fields) -> pb.User:
        return stub.CreateUser(pb.CreateUserRequest(username=username, **fields), timeout=10).user

    return create_user
