"""The llm unit under test: running it in-process on a free port, and the calls its tests share."""

import asyncio
import contextlib
import dataclasses
import itertools
import socket
import time

import aiohttp
import grpc
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from llmchatlinker.llm.v1 import llm_service_pb2_grpc as pb_grpc
from services.common.errors import error_info
from services.llm_unit.config import Settings
from services.llm_unit.server import LlmUnitServer
from testkit.backends import TEST_KEY_ENCRYPTION_KEY
from testkit.llm_server import LlmServer

DOMAIN = "llm.llmchatlinker.dev"
OPENAI = pb.PROVIDER_KIND_OPENAI
OLLAMA = pb.PROVIDER_KIND_OLLAMA
SECRET = "sk-test-5ecret-DO-NOT-SHOW-0123456789"
HELLO = [pb.ConversationMessage(role="system", content="be brief"),
         pb.ConversationMessage(role="user", content="hello big world")]


@dataclasses.dataclass
class Unit:
    """A running unit, a channel to it and its stub."""

    server: LlmUnitServer
    channel: grpc.aio.Channel
    stub: pb_grpc.LlmServiceStub


def settings_for(url: str, schema: str | None = None, **overrides) -> Settings:
    """On loopback; on PostgreSQL with TEST_KEY_ENCRYPTION_KEY (unless `overrides` say otherwise)."""
    if not url.startswith("sqlite"):
        overrides.setdefault("key_encryption_keys", (TEST_KEY_ENCRYPTION_KEY,))
    return Settings(address="127.0.0.1:0", database_url=url, database_schema=schema or "llm_unit", **overrides)


@contextlib.asynccontextmanager
async def running_unit(settings: Settings, clock=time.monotonic, resolver=None, now=None):
    """The unit on a free port; `clock` is what its model cache reads the time from, `resolver`
    how it looks up provider names (HostsResolver; default: the system's), `now` the wall clock of
    its users' limit windows (default: the real one)."""
    server = LlmUnitServer(settings, clock=clock, resolver=resolver, **({"now": now} if now else {}))
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Unit(server, channel, pb_grpc.LlmServiceStub(channel))
    finally:
        await channel.close()
        await server.stop(grace=1)


class HostsResolver(AbstractResolver):
    """Provider names looked up in a table, like /etc/hosts: name -> a list of addresses, or a
    function giving the list at each lookup (a name whose answer changes). Other names: the system."""

    def __init__(self, hosts: dict) -> None:
        self.hosts = hosts
        self.lookups: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        if host not in self.hosts:
            return await ThreadedResolver().resolve(host, port, family)
        self.lookups.append(host)
        answer = self.hosts[host]
        addresses = answer() if callable(answer) else answer
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for address in addresses]

    async def close(self) -> None:
        pass


async def expect_error(awaitable, code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    """Awaits a call that must fail with `code` and an ErrorInfo of our domain with `reason`."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    error = caught.value
    assert error.code() == code, error.details()
    info = error_info(error)
    assert info is not None and (info.reason, info.domain) == (reason, DOMAIN), error.details()
    return error


async def add_provider(stub, name="acme", url="http://127.0.0.1:9/v1/chat/completions", kind=OPENAI,
                       api_key=None, request_id="") -> pb.Provider:
    request = pb.CreateProviderRequest(name=name, api_endpoint=url, kind=kind, request_id=request_id)
    if api_key is not None:
        request.api_key = api_key
    return (await stub.CreateProvider(request)).provider


async def add_llm(stub, provider_id: str, name="model-a", **limits) -> pb.Llm:
    return (await stub.CreateLlm(pb.CreateLlmRequest(provider_id=provider_id, name=name, **limits))).llm


async def add_model(stub, url: str, kind=OPENAI, model="model-a", api_key=None, name="acme") -> pb.Llm:
    """A provider at `url` with one model; testkit options can ride in the model name (`m@fail=500`)."""
    provider = await add_provider(stub, name=name, url=url, kind=kind, api_key=api_key)
    return await add_llm(stub, provider.provider_id, model)


async def generate(stub, llm_id: str, messages=HELLO, **fields) -> tuple[list[str], pb.FinalReply]:
    """Runs a generation to its end: the deltas, then the final reply (which must come last, once)."""
    deltas, finals = [], []
    async for event in stub.GenerateReply(pb.GenerateReplyRequest(llm_id=llm_id, messages=messages, **fields)):
        assert not finals, "an event after the final reply"
        if event.HasField("delta"):
            deltas.append(event.delta.content)
        else:
            finals.append(event.final)
    assert len(finals) == 1
    return deltas, finals[0]


async def kit_json(server: LlmServer, path: str):
    async with aiohttp.ClientSession() as session, session.get(server.base_url + path) as response:
        return await response.json()


async def wait_for_stat(server: LlmServer, name: str, value: int, seconds: float = 5.0) -> dict:
    """Polls /_testkit/stats until stats[name] reaches value (or the time runs out)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    while True:
        stats = await kit_json(server, "/_testkit/stats")
        if stats[name] >= value or loop.time() > give_up:
            return stats
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def fake_provider(handler):
    """A tiny HTTP provider answering every POST with `handler(request)`; yields its URL."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    finally:
        await runner.cleanup()


def assert_whole_tokens(deltas: list[str], tokens: list[str]) -> None:
    """The deltas are the tokens in order, some joined (a busy relay joins what queued up), none split."""
    assert "".join(deltas) == "".join(tokens)
    boundaries = set(itertools.accumulate(len(token) for token in tokens))
    assert set(itertools.accumulate(len(delta) for delta in deltas)) <= boundaries
