"""Serving: a port another server of ours listens on is refused, naming it, instead of being shared."""

import pytest

from services.common.serving import AsyncServer, ThreadedServer


def nothing(_server) -> None:
    pass


def test_a_threaded_server_refuses_a_port_a_server_of_ours_listens_on():
    first = ThreadedServer(nothing, [], "127.0.0.1:0").start()
    try:
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{first.port}: the port is in use"):
            ThreadedServer(nothing, [], f"127.0.0.1:{first.port}")
    finally:
        first.stop(0)


async def test_an_async_server_refuses_a_port_a_server_of_ours_listens_on():
    first = ThreadedServer(nothing, [], "127.0.0.1:0").start()
    try:
        with pytest.raises(RuntimeError, match="the port is in use"):
            AsyncServer(nothing, [], f"127.0.0.1:{first.port}")
    finally:
        first.stop(0)
