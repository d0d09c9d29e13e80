"""Fixtures the thread-pool units' tests share: a real server on port 0 on the test's database,
channels to it, and the checks that a call fails with a code and reason, or that calls race.

A unit's conftest defines `database_unit` (what to start) and imports the fixtures it uses:
`from testkit.units import channel, connect, server, settings, start_server, stub  # noqa: F401`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent import futures

import grpc
import pytest

from services.common.errors import error_info

# Results may be 16 MiB, past a channel's default 4 MiB receive limit; the servers accept 32 MiB.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 32 << 20)]


@dataclasses.dataclass(frozen=True)
class DatabaseUnit:
    """What the shared fixtures start and call: a unit's settings, server, stub and error domain."""

    settings_class: type
    build_server: Callable
    stub_class: type
    domain: str


@pytest.fixture
def settings(database_unit: DatabaseUnit, database_target):
    return database_unit.settings_class(
        address="127.0.0.1:0", database_url=database_target.url, database_schema=database_target.schema
    )


@pytest.fixture
def start_server(database_unit: DatabaseUnit, settings):
    """Starts the unit on the test's database; every server started is stopped at the end."""
    started = []

    def start():
        started.append(database_unit.build_server(settings).start())
        return started[-1]

    yield start
    for server in started:
        server.stop(grace=None)


@pytest.fixture
def connect():
    """Opens a channel to a port; every channel opened is closed at the end."""
    opened = []

    def open_channel(port: int) -> grpc.Channel:
        opened.append(grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS))
        return opened[-1]

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
def stub(database_unit: DatabaseUnit, channel):
    return database_unit.stub_class(channel)


def expect_failure(method, request, code: grpc.StatusCode, reason: str, domain: str) -> grpc.RpcError:
    """Calls `method`, which must fail with `code` and an ErrorInfo of `domain` with `reason`."""
    with pytest.raises(grpc.RpcError) as caught:
        method(request, timeout=10)
    error = caught.value
    info = error_info(error)
    assert (error.code(), info.reason if info else None) == (code, reason), error.details()
    assert info.domain == domain
    return error


@pytest.fixture
def fails(database_unit: DatabaseUnit):
    """Asserts a call fails with a status code and an ErrorInfo reason of the unit's domain.

    fails(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", stub.GetUser, request) returns the RpcError.
    """
    return lambda code, reason, method, request: expect_failure(method, request, code, reason, database_unit.domain)


def together(method, requests: list) -> list:
    """Sends every request at once, each from its own thread; each outcome is the response or the error."""
    start = threading.Barrier(len(requests))

    def call(request):
        start.wait()
        try:
            return method(request, timeout=60)
        except grpc.RpcError as error:
            return error

    with futures.ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(call, requests))
