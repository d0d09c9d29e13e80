"""The misbehaviours a request can ask of the stand-in LLM with `fail=`."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from typing import NoReturn

from aiohttp import web

from testkit.wire import Wire

# Long enough to outlast any test or benchmark deadline; a stall normally ends by cancellation.
STALL_SECONDS = 24 * 3600

_MESSAGES = {
    401: "testkit: invalid or missing API key",
    429: "testkit: rate limit reached, retry later",
    500: "testkit: injected server error",
}


class HungUp(asyncio.CancelledError):
    """The server closed the connection on purpose.

    It is a CancelledError because aiohttp ends a cancelled handler quietly, whereas any
    other exception is logged and answered with a 500 it can no longer send.
    """


def hang_up(request: web.BaseRequest, *, reset: bool) -> NoReturn:
    """Drop the connection: with a TCP reset, or after flushing what was written."""
    transport = request.transport
    if transport is not None:
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0 turns close into an RST, which clients report as a reset.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
    raise HungUp()


def error_response(wire: Wire, status: int, message: str | None = None) -> web.Response:
    headers = {"Retry-After": "1"} if status == 429 else None
    text = message or _MESSAGES.get(status, f"testkit: HTTP {status}")
    return web.json_response(wire.error(status, text), status=status, headers=headers)


async def stall(request: web.BaseRequest) -> NoReturn:
    await asyncio.sleep(STALL_SECONDS)
    hang_up(request, reset=True)


async def drip(request: web.BaseRequest, wire: Wire, stream: bool, drip_ms: float) -> NoReturn:
    """Send headers, then one byte of a plausible body every drip_ms, for ever."""
    content_type = wire.stream_content_type if stream else "application/json"
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    head, repeat = wire.drip(stream)
    for byte in itertools.chain(head, itertools.cycle(repeat)):
        await response.write(bytes((byte,)))
        await asyncio.sleep(drip_ms / 1000)
    raise AssertionError("unreachable: the drip never ends")


async def flood(request: web.BaseRequest, wire: Wire, stream: bool) -> NoReturn:
    """A reply without end: valid tokens as fast as the client takes them (a plain JSON answer: one
    string that never closes), for ever."""
    content_type = wire.stream_content_type if stream else "application/json"
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    if stream:
        await response.write(wire.opening())
        chunk = wire.token("flood ") * 256
    else:
        await response.write(b'{"choices": [{"message": {"role": "assistant", "content": "')
        chunk = b"flood " * 4096
    while True:
        await response.write(chunk)
        await asyncio.sleep(0)  # a write that need not wait for the client would never let others run


async def garbage(request: web.BaseRequest, wire: Wire, stream: bool, lines: int) -> web.StreamResponse:
    """A 200 whose payload does not parse as JSON."""
    if not stream:
        return web.Response(body=wire.garbage_body, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": wire.stream_content_type})
    await response.prepare(request)
    await response.write(wire.garbage_line * max(lines, 1) + wire.garbage_end)
    await response.write_eof()
    return response


async def cut_body(request: web.BaseRequest, body: bytes) -> NoReturn:
    """Promise the whole JSON body, send half of it, then close."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    hang_up(request, reset=False)
