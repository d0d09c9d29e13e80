"""Fixtures of the orchestrator's tests: real RabbitMQ helpers (a legacy JSON client, a cuttable
proxy), the four units in-process, the stand-in LLM, a Control Unit wired to them (every unit
call checked for its deadline), and orchestrators on unique queues."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import inspect
import json
import time
import urllib.parse
import uuid

import grpc
import pika
import pytest

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as orchestrator_grpc
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from llmchatlinker.wire import instruction_from_json
from services.common.limits import PROTOBUF
from services.orchestrator.config import Settings
from services.orchestrator.instructions.control import ControlUnit
from services.orchestrator.server import OrchestratorServer, build_server
from services.orchestrator.units.channels import GENERATION_DEADLINE_S, UNARY_DEADLINE_S, UnitChannels
from services.orchestrator.units.gateways import Units
from testkit import LlmServer
# AMQP_URL: the broker of the root conftest's `amqp_url` fixture (read here too: teardown outlives it).
from testkit.backends import AMQP_URL, TEST_KEY_ENCRYPTION_KEY, delete_queues, drop_schemas

# ---- RabbitMQ as a legacy client sees it ------------------------------------------------------


class LegacyClient:
    """What an unmodified client of the original LLMChatLinker does, with pika's BlockingConnection:
    declare the queue durable with no arguments, publish with reply_to, correlation_id and
    delivery_mode=2, and wait on its exclusive server-named queue. Used from one thread at a time."""

    def __init__(self, url: str, queue: str):
        self.queue = queue
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._connection.channel()
        self._channel.queue_declare(queue=queue, durable=True)
        self.reply_queue = self._channel.queue_declare(queue="", exclusive=True).method.queue
        self.replies: dict[str, list[tuple[pika.BasicProperties, bytes]]] = {}
        self._channel.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)

    def _on_reply(self, _channel, _method, properties, body) -> None:
        self.replies.setdefault(properties.correlation_id, []).append((properties, body))

    def publish(self, body: bytes, *, correlation_id: str | None = None, message_id: str | None = None,
                content_type: str | None = None, headers: dict | None = None) -> str:
        correlation_id = correlation_id or str(uuid.uuid4())
        self._channel.basic_publish("", self.queue, body, pika.BasicProperties(
            reply_to=self.reply_queue, correlation_id=correlation_id, delivery_mode=2,
            message_id=message_id, content_type=content_type, headers=headers))
        return correlation_id

    def send(self, json_type: str, data: dict | None = None, **properties) -> str:
        return self.publish(json.dumps({"type": json_type, "data": data or {}}).encode(), **properties)

    def wait(self, correlation_ids, final=lambda body: True, timeout: float = 90) -> dict[str, list[bytes]]:
        """Waits until each id has a reply that `final` accepts; returns the bodies received so far."""
        deadline = time.monotonic() + timeout
        pending = set(correlation_ids)
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply for {len(pending)} of {len(set(correlation_ids))} requests")
            self._connection.process_data_events(time_limit=0.1)
            pending = {c for c in pending if not any(final(b) for _, b in self.replies.get(c, []))}
        return {c: [b for _, b in self.replies.get(c, [])] for c in correlation_ids}

    def pump(self, seconds: float) -> None:
        """Takes in the replies that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._connection.process_data_events(time_limit=left)

    def wait_for_replies(self, count: int, timeout: float = 90) -> None:
        """Waits until replies for `count` distinct correlation ids have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.replies) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.replies)} of {count} replies")
            self._connection.process_data_events(time_limit=0.05)

    def call(self, json_type: str, data: dict | None = None) -> dict:
        correlation_id = self.send(json_type, data)
        return json.loads(self.wait([correlation_id])[correlation_id][0])

    def call_proto(self, instruction: orchestrator_pb2.Instruction,
                   content_type: str = PROTOBUF) -> list[orchestrator_pb2.Result]:
        """Protobuf over AMQP: every Result received, up to and including the final one."""
        correlation_id = self.publish(instruction.SerializeToString(), content_type=content_type)
        bodies = self.wait([correlation_id], final=lambda b: orchestrator_pb2.Result.FromString(b).final)
        return [orchestrator_pb2.Result.FromString(body) for body in bodies[correlation_id]]

    def take_all(self, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
        taken = []
        while True:
            method, properties, body = self._channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, body))

    def message_count(self, queue: str) -> int:
        return self._channel.queue_declare(queue=queue, passive=True).method.message_count

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()


@pytest.fixture
def queue_name(request) -> str:
    """A queue of this test only; it, its dead-letter queue and the reply queues of the replicas
    that used it (see `replies_on`) are deleted after."""
    name = f"test_{uuid.uuid4().hex[:10]}_instruction_queue"
    _reply_queues[name] = []
    yield name
    created = [name, name + ".dead"] + _reply_queues.pop(name)
    if "amqp_url" in request.fixturenames:
        delete_queues(AMQP_URL, created)


_reply_queues: dict[str, list[str]] = {}


@pytest.fixture
def replies_on(queue_name):
    """Remembers a replica's reply queue for deletion after the test."""
    return _reply_queues[queue_name].append


@pytest.fixture
async def legacy(amqp_url, queue_name):
    """Opens legacy clients on this test's queue (in the calling thread) and closes them after."""
    clients: list[LegacyClient] = []

    def open_client() -> LegacyClient:
        client = LegacyClient(amqp_url, queue_name)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def blocking(function, *args, **kwargs):
    """Runs a blocking pika call off the event loop that serves the units and the orchestrator."""
    return asyncio.to_thread(function, *args, **kwargs)


class CuttableProxy:
    """A TCP proxy in front of the broker: cut() drops every connection, as a network failure would."""

    def __init__(self, url: str):
        self._parsed = urllib.parse.urlsplit(url)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        credentials = self._parsed.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urllib.parse.urlunsplit(self._parsed._replace(netloc=netloc))

    async def start(self) -> "CuttableProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader, writer) -> None:
        target = (self._parsed.hostname or "127.0.0.1", self._parsed.port or 5672)
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True)

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def refuse(self) -> None:
        """The broker is gone: every connection dropped, and no new one taken."""
        self.cut()
        self._server.close()
        await self._server.wait_closed()

    async def accept_again(self) -> None:
        """The broker is back, on the same port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()


class StallingProxy:
    """A TCP proxy in front of a unit: stall() holds the unit's answers while its requests still
    reach it (a unit that committed and hangs before answering); release() lets them through."""

    def __init__(self, target: str):
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.AbstractServer | None = None
        self.address = ""

    async def start(self) -> "StallingProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def _accept(self, reader, writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer, self._open),
                             return_exceptions=True)

    def stall(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def stop(self) -> None:
        self.release()
        self._server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event | None = None) -> None:
    try:
        while data := await reader.read(65536):
            if gate is not None:
                await gate.wait()
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()


@pytest.fixture
async def proxy(amqp_url):
    server = await CuttableProxy(amqp_url).start()
    yield server
    await server.stop()


@pytest.fixture
async def stalling_proxy():
    """`await stalling_proxy("127.0.0.1:PORT")`: a StallingProxy in front of that address."""
    started: list[StallingProxy] = []

    async def start(target: str) -> StallingProxy:
        started.append(await StallingProxy(target).start())
        return started[-1]

    yield start
    for proxy in started:
        await proxy.stop()


@pytest.fixture
def eventually():
    return wait_until


@pytest.fixture
def blocking_call():
    return blocking


async def wait_until(predicate, timeout: float = 60, what: str = "condition"):
    """Polls `predicate` (sync or async) until it is truthy; bounded, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


# ---- the four units, the stand-in LLM, and orchestrators ----------------------------------------

UNITS = ("user_unit", "chat_unit", "llm_unit", "db_unit")
ANY_PORT = "127.0.0.1:0"


@dataclasses.dataclass
class Suite:
    """Running units (by name), their addresses, channels to them, and the stand-in LLM."""

    servers: dict
    channels: UnitChannels
    provider: LlmServer
    # Unit -> how to build it again on its port and database (stop_unit / restart_unit).
    rebuild: dict = dataclasses.field(default_factory=dict)

    def address(self, unit: str) -> str:
        return f"127.0.0.1:{self.servers[unit].port}"

    def settings(self, queue: str, amqp_url: str | None, max_in_flight: int = 256, **overrides) -> Settings:
        return Settings(**{"address": ANY_PORT, "user_unit_addr": self.address("user_unit"),
                           "chat_unit_addr": self.address("chat_unit"), "llm_unit_addr": self.address("llm_unit"),
                           "db_unit_addr": self.address("db_unit"), "amqp_url": amqp_url, "queue": queue,
                           "max_in_flight": max_in_flight, **overrides})

    async def stop_unit(self, unit: str) -> None:
        """The unit goes down, as a crashed process would (its port stays reserved for restart_unit)."""
        await _maybe_await(self.servers[unit].stop(0))

    async def restart_unit(self, unit: str) -> None:
        """The unit comes back on the same port and database."""
        self.servers[unit] = self.rebuild[unit]()
        await _maybe_await(self.servers[unit].start())

    def env(self, queue: str, amqp_url: str, max_in_flight: int) -> dict[str, str]:
        """The orchestrator's environment variables, for running it as a process."""
        return {"LLMCHATLINKER_ORCHESTRATOR_PORT": "0", "LLMCHATLINKER_AMQP_URL": amqp_url,
                "LLMCHATLINKER_QUEUE": queue, "LLMCHATLINKER_MAX_IN_FLIGHT": str(max_in_flight),
                **{f"LLMCHATLINKER_{unit.upper()}_ADDR": self.address(unit) for unit in UNITS}}

    async def users(self) -> list:
        response = await self.channels.users.ListUsers(user_pb2.ListUsersRequest(page_size=1000), timeout=10)
        return list(response.users)


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


@contextlib.asynccontextmanager
async def running_units(url: str, schema_prefix: str | None):
    """On SQLite `url` is a directory URL (a file per unit); on PostgreSQL a schema per unit."""
    servers, rebuild = {}, {}
    try:
        for unit in UNITS:
            config = importlib.import_module(f"services.{unit}.config")
            server = importlib.import_module(f"services.{unit}.server")
            options = {"database_schema": f"{schema_prefix}_{unit}"} if schema_prefix else {}
            if schema_prefix and unit == "llm_unit":  # on PostgreSQL it needs a key-encryption key given
                options["key_encryption_keys"] = (TEST_KEY_ENCRYPTION_KEY,)
            unit_url = url if schema_prefix else f"{url}/{unit}.db"
            built = server.build_server(config.Settings(address=ANY_PORT, database_url=unit_url, **options))
            servers[unit] = built
            await _maybe_await(built.start())
            rebuild[unit] = functools.partial(server.build_server, config.Settings(
                address=f"127.0.0.1:{built.port}", database_url=unit_url, **options))
        provider = LlmServer()
        await provider.start()
        suite = Suite(servers, UnitChannels.connect(*(f"127.0.0.1:{servers[u].port}" for u in UNITS)), provider,
                      rebuild)
        try:
            yield suite
        finally:
            await suite.channels.close()
            await provider.stop()
    finally:
        for built in servers.values():
            await _maybe_await(built.stop(0))


@pytest.fixture
async def suite(tmp_path):
    """The units on SQLite files (one per unit)."""
    async with running_units(f"sqlite:///{tmp_path}", None) as running:
        yield running


@pytest.fixture
async def suite_db(database_target):
    """The units on each database of the root `database_target` fixture (SQLite and PostgreSQL);
    on PostgreSQL each unit gets a schema of its own, dropped after."""
    prefix = database_target.schema
    url = database_target.url if prefix else f"sqlite:///{database_target.url.rpartition('/')[0].removeprefix('sqlite:///')}"
    try:
        async with running_units(url, prefix) as running:
            yield running
    finally:
        if prefix:
            drop_schemas(database_target.url, [f"{prefix}_{unit}" for unit in UNITS])


class DeadlineChecked:
    """A stub whose every call must carry a deadline no longer than the allowed one; calls are logged."""

    def __init__(self, stub, calls: list[str]):
        self._stub = stub
        self._calls = calls

    def __getattr__(self, method_name: str):
        method = getattr(self._stub, method_name)
        limit = GENERATION_DEADLINE_S if method_name == "GenerateReply" else UNARY_DEADLINE_S

        def call(request, **options):
            timeout = options.get("timeout")
            assert timeout is not None and 0 < timeout <= limit, f"{method_name} called without a deadline"
            self._calls.append(method_name)
            return method(request, **options)

        return call


@dataclasses.dataclass
class ControlHarness:
    """A Control Unit on running units, executing instructions directly (no queue)."""

    channels: UnitChannels
    gateways: Units
    control: ControlUnit
    provider: LlmServer
    # Names of the unit methods called, in order.
    calls: list[str]
    # Progress events emitted by the last run, in order.
    events: list[orchestrator_pb2.Result] = dataclasses.field(default_factory=list)

    async def run(self, body: dict | orchestrator_pb2.Instruction, instruction_id: str | None = None) -> orchestrator_pb2.Result:
        """Executes a legacy JSON body or a typed instruction under a fresh (or the given) id."""
        instruction = orchestrator_pb2.Instruction()
        instruction.CopyFrom(body if isinstance(body, orchestrator_pb2.Instruction) else instruction_from_json(body))
        instruction.instruction_id = instruction_id or str(uuid.uuid4())
        self.events = []
        return await self.control.execute(instruction, self.emit)

    async def ok(self, json_type: str, **data) -> orchestrator_pb2.Result:
        """Runs `{"type": json_type, "data": data}` and fails the test unless it succeeds."""
        result = await self.run({"type": json_type, "data": data})
        assert result.status.code == 0, f"{json_type} failed: {result.status}"
        return result

    async def emit(self, event: orchestrator_pb2.Result) -> None:
        self.events.append(event)

    # Small builders for the state most tests need.
    async def user(self, username: str) -> str:
        return (await self.ok("USER_CREATE", username=username)).user.user_id

    async def chat(self, *user_ids: str, title: str = "Rivers") -> str:
        return (await self.ok("CHAT_CREATE", title=title, user_ids=list(user_ids))).chat.chat.chat_id

    async def model(self, name: str = "stand-in", provider_name: str | None = None, **limits) -> tuple[str, str]:
        provider = await self.ok("LLM_PROVIDER_ADD", name=provider_name or f"provider-{uuid.uuid4().hex[:8]}",
                                 api_endpoint=self.provider.openai_url)
        provider_id = provider.provider.provider_id
        llm = await self.ok("LLM_ADD", provider_id=provider_id, llm_name=name, **limits)
        return provider_id, llm.llm.llm_id


@pytest.fixture
async def units(suite):
    """A ControlHarness on the `suite` units; every unit call must carry its deadline
    (grpc.aio has no default deadline, so every test that uses it checks that)."""
    calls: list[str] = []
    channels = UnitChannels.connect(*(suite.address(unit) for unit in UNITS))
    channels.users = DeadlineChecked(channels.users, calls)
    channels.chats = DeadlineChecked(channels.chats, calls)
    channels.llms = DeadlineChecked(channels.llms, calls)
    channels.records = DeadlineChecked(channels.records, calls)
    gateways = Units.over(channels)
    try:
        yield ControlHarness(channels, gateways, ControlUnit(gateways), suite.provider, calls)
    finally:
        await channels.close()


@pytest.fixture
async def orchestrators(queue_name, replies_on):
    """Starts orchestrator replicas on this test's queue: `await start(suite, amqp_url)`."""
    started: list[OrchestratorServer] = []

    async def start(units: Suite, amqp_url: str | None, max_in_flight: int = 256, **overrides) -> OrchestratorServer:
        server = build_server(units.settings(queue_name, amqp_url, max_in_flight, **overrides))
        replies_on(server.transport.reply_queue)
        started.append(server)
        return await server.start()

    yield start
    for server in reversed(started):
        await server.stop(grace=5)


@contextlib.asynccontextmanager
async def front_door(server: OrchestratorServer):
    """An OrchestratorService stub on a replica's gRPC port."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield orchestrator_grpc.OrchestratorServiceStub(channel)


@pytest.fixture
def submit_stub():
    return front_door


async def submit_all(stub, instruction: orchestrator_pb2.Instruction, timeout: float = 90) -> list:
    """Every Result of one Submit call, in the order streamed."""
    request = orchestrator_pb2.SubmitRequest(instruction=instruction)
    return [response.result async for response in stub.Submit(request, timeout=timeout)]


@pytest.fixture
def submit():
    return submit_all
