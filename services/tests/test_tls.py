"""TLS end to end: a client reaches the front door over TLS, the orchestrator reaches the four units
over mutual TLS with the internal token, and a generation streams back; a caller without a
certificate of the suite's CA cannot connect to a unit, and one with it still needs the token."""

import asyncio
import importlib
import pathlib
import shutil
import subprocess
import sys
import types

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmchatlinker.client.aio import AsyncClient
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.user.v1 import user_service_pb2 as user_pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as user_grpc
from services.common.admission import call_metadata
from services.common.config import ClientTls, ServerTls
from services.common.errors import error_info
from services.orchestrator.config import Settings as OrchestratorSettings
from services.orchestrator.server import build_server as build_orchestrator
from testkit import certificates
from testkit.llm_server import LlmServer

UNITS = ("user_unit", "chat_unit", "llm_unit", "db_unit")
GRPCURL = shutil.which("grpcurl", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("grpcurl")
TOKEN = "the-internal-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The suite's CA with certificates for the units, the orchestrator and the front door, and a
    stranger's certificate from another CA."""
    certificates.require_openssl()
    directory = tmp_path_factory.mktemp("pki")
    ca = certificates.authority(directory / "suite")
    return types.SimpleNamespace(ca=ca, unit=ca.issue("unit"), orchestrator=ca.issue("orchestrator"),
                                 front_door=ca.issue("front-door"),
                                 stranger=certificates.authority(directory / "other", "other-ca").issue("stranger"))


def _pem(path) -> bytes:
    return path.read_bytes()


async def _maybe_await(value):
    return await value if hasattr(value, "__await__") else value


@pytest.fixture
async def units(pki, tmp_path):
    """The four units on SQLite, each over mutual TLS (the suite's CA) and with the token."""
    tls = ServerTls(_pem(pki.unit.cert), _pem(pki.unit.key), client_ca=_pem(pki.ca.cert))
    servers = {}
    try:
        for unit in UNITS:
            settings = importlib.import_module(f"services.{unit}.config").Settings(
                address="127.0.0.1:0", database_url=f"sqlite:///{tmp_path / unit}.db", internal_token=TOKEN, tls=tls)
            servers[unit] = importlib.import_module(f"services.{unit}.server").build_server(settings)
            await _maybe_await(servers[unit].start())
        yield {unit: f"127.0.0.1:{server.port}" for unit, server in servers.items()}
    finally:
        for server in servers.values():
            await _maybe_await(server.stop(0))


async def test_a_generation_runs_over_tls_from_the_client_through_every_unit(pki, units):
    provider = LlmServer()
    await provider.start()
    orchestrator = build_orchestrator(OrchestratorSettings(
        address="127.0.0.1:0", **{f"{unit}_addr": address for unit, address in units.items()},
        internal_token=TOKEN, tls=ServerTls(_pem(pki.front_door.cert), _pem(pki.front_door.key)),
        unit_tls=ClientTls(_pem(pki.ca.cert), _pem(pki.orchestrator.cert), _pem(pki.orchestrator.key))))
    await orchestrator.start()
    try:
        front_door = f"127.0.0.1:{orchestrator.port}"
        async with AsyncClient(front_door, credentials=grpc.ssl_channel_credentials(_pem(pki.ca.cert)),
                               timeout=60) as client:
            user = (await client.submit(pb.UserCreate(username="ada_tls"))).user
            added = await client.submit(pb.LlmProviderAdd(name="stand-in", api_endpoint=provider.openai_url))
            llm = (await client.submit(pb.LlmAdd(provider_id=added.provider.provider_id, llm_name="m"))).llm
            chat = (await client.submit(pb.ChatCreate(title="over TLS", user_ids=[user.user_id]))).chat.chat
            events = [event async for event in client.stream(pb.LlmResponseGenerate(
                user_id=user.user_id, chat_id=chat.chat_id, llm_id=llm.llm_id, user_input="hello there"))]
        assert any(event.HasField("delta") for event in events)
        assert events[-1].llm_response.message.content

        async with AsyncClient(front_door, timeout=5) as plaintext:  # the front door speaks TLS only
            with pytest.raises(Exception, match="UNAVAILABLE"):
                await plaintext.submit(pb.UserList())
    finally:
        await orchestrator.stop(grace=1)
        await provider.stop()


def _unit_channel(pki, address: str, client=None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        _pem(pki.ca.cert), *((_pem(client.key), _pem(client.cert)) if client else ()))
    return grpc.aio.secure_channel(address, credentials)


async def test_a_unit_over_mutual_tls_admits_only_certificates_of_the_suite_and_then_the_token(pki, units):
    request = user_pb.ListUsersRequest(page_size=1)
    for client in (None, pki.stranger):  # no certificate, or one of another CA: no connection at all
        async with _unit_channel(pki, units["user_unit"], client) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.insecure_channel(units["user_unit"]) as plaintext:
        with pytest.raises(grpc.RpcError) as caught:
            await user_grpc.UserServiceStub(plaintext).ListUsers(request, timeout=5, metadata=call_metadata(TOKEN))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

    async with _unit_channel(pki, units["user_unit"], pki.orchestrator) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        users = user_grpc.UserServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            await users.ListUsers(request, timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(caught.value).reason == "INTERNAL_CREDENTIAL_MISSING"
        await users.ListUsers(request, timeout=5, metadata=call_metadata(TOKEN))


@pytest.mark.skipif(GRPCURL is None, reason="no grpcurl (a dev dependency)")
async def test_grpcurl_reaches_a_unit_over_mutual_tls_as_the_readme_shows(pki, units):
    def grpcurl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([GRPCURL, "-cacert", str(pki.ca.cert), "-cert", str(pki.orchestrator.cert),
                               "-key", str(pki.orchestrator.key), *args], capture_output=True, text=True, timeout=30)

    address = units["user_unit"]
    listed = await asyncio.to_thread(grpcurl, "-H", f"authorization: Bearer {TOKEN}", "-d", '{"page_size": 2}',
                                     address, "llmchatlinker.user.v1.UserService/ListUsers")
    assert listed.returncode == 0, listed.stderr
    health = await asyncio.to_thread(grpcurl, address, "grpc.health.v1.Health/Check")
    assert '"status": "SERVING"' in health.stdout, health.stderr
    refused = await asyncio.to_thread(grpcurl, address, "llmchatlinker.user.v1.UserService/ListUsers")
    assert refused.returncode != 0 and "Code: Unauthenticated" in refused.stderr, refused.stderr
