"""Starting and stopping what the bench measures, each as its own process on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography.fernet import Fernet
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
UNITS = ("user_unit", "chat_unit", "llm_unit", "db_unit")
SERVICES = UNITS + ("orchestrator",)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StartError(RuntimeError):
    """A process exited or never became ready; the message carries its log's tail."""


@dataclass
class Process:
    """One child process, its port and its log file."""

    name: str
    popen: subprocess.Popen
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise StartError(f"{self.name} exited with {self.popen.returncode}; "
                             f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def spawn(name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path) -> Process:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")
    popen = subprocess.Popen(argv, env={**os.environ, **env}, cwd=REPO, stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    return Process(name, popen, port, log_path)


async def wait_until(process: Process, ready, timeout: float = START_TIMEOUT_S) -> None:
    """Poll the async predicate `ready()` until it is true, failing fast if the process dies."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            process.check_alive()
            with contextlib.suppress(Exception):
                if await ready():
                    return
            if time.monotonic() > deadline:
                raise StartError(f"{process.name} not ready after {timeout:.0f} s; "
                                 f"log {process.log_path}:\n{process.log_tail()}")
            await asyncio.sleep(0.1)
    except BaseException:
        process.stop()  # nobody else holds it yet
        raise


async def grpc_serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


async def http_answers(url: str) -> bool:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
        return r.status < 500


async def start_llm_server(log_dir: Path) -> Process:
    """The stand-in provider in its own process, so its CPU is not counted as ours."""
    port = free_port()
    process = spawn("testkit_llm", [sys.executable, "-m", "testkit.llm_server", "--port", str(port),
                                           "--interval-ms", "0"],  # scenarios set their own pace
                    {}, port, log_dir)
    await wait_until(process, lambda: http_answers(f"http://127.0.0.1:{port}/_testkit/stats"))
    return process


@dataclass
class SuiteOptions:
    amqp_url: str | None = None
    postgres_url: str | None = None   # server URL; the bench makes its own database on it
    queue: str | None = None
    max_in_flight: int | None = None
    env: dict[str, str] = field(default_factory=dict)  # more settings for every service (metrics, tracing)
    # Orchestrator processes on the one queue (needs amqp_url): the first takes the instructions,
    # the others stand by and serve Submit through their own front doors.
    orchestrators: int = 1


@dataclass
class Suite:
    """The four units and the orchestrator, each `python -m services.<name>`."""

    options: SuiteOptions
    log_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)
    _data_dir: Path | None = None
    _pg_database: str | None = None

    @property
    def orchestrator(self) -> str:
        return self.processes["orchestrator"].address

    @property
    def front_doors(self) -> list[str]:
        """Every orchestrator's address, the taker's first."""
        return [p.address for name, p in self.processes.items() if name.startswith("orchestrator")]

    def address(self, name: str) -> str:
        return self.processes[name].address

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    def _database_url(self, unit: str) -> str:
        if self._pg_database:
            return f"{self.options.postgres_url.rstrip('/')}/{self._pg_database}"
        assert self._data_dir is not None
        return f"sqlite:///{self._data_dir / unit}.db"

    async def start(self) -> None:
        if self.options.postgres_url:
            self._pg_database = _create_pg_database(self.options.postgres_url)
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="llmchatlinker-bench-"))
        ports = {name: free_port() for name in SERVICES}
        env: dict[str, str] = {}
        for unit in UNITS:
            env[f"LLMCHATLINKER_{unit.upper()}_PORT"] = str(ports[unit])
            env[f"LLMCHATLINKER_{unit.upper()}_DATABASE_URL"] = self._database_url(unit)
            env[f"LLMCHATLINKER_{unit.upper()}_ADDR"] = f"127.0.0.1:{ports[unit]}"
        env["LLMCHATLINKER_ORCHESTRATOR_PORT"] = str(ports["orchestrator"])
        if self._pg_database:  # the llm_unit on PostgreSQL needs a key-encryption key given
            env["LLMCHATLINKER_LLM_UNIT_KEY_ENCRYPTION_KEY"] = Fernet.generate_key().decode()  # a fresh database
        if self.options.amqp_url:
            env["LLMCHATLINKER_AMQP_URL"] = self.options.amqp_url
        else:
            os.environ.pop("LLMCHATLINKER_AMQP_URL", None)
        if self.options.queue:
            env["LLMCHATLINKER_QUEUE"] = self.options.queue
        if self.options.max_in_flight:
            env["LLMCHATLINKER_MAX_IN_FLIGHT"] = str(self.options.max_in_flight)
        env.update(self.options.env)
        for name in UNITS:
            self.processes[name] = spawn(name, [sys.executable, "-m", f"services.{name}"], env,
                                         ports[name], self.log_dir)
        await asyncio.gather(*(wait_until(self.processes[n], lambda a=self.address(n): grpc_serving(a))
                               for n in UNITS))
        self.processes["orchestrator"] = spawn("orchestrator", [sys.executable, "-m", "services.orchestrator"],
                                               env, ports["orchestrator"], self.log_dir)
        await wait_until(self.processes["orchestrator"], lambda: grpc_serving(self.orchestrator))
        if self.options.orchestrators > 1 and not self.options.amqp_url:
            raise ValueError("several orchestrators share a RabbitMQ queue: give amqp_url")
        for index in range(2, self.options.orchestrators + 1):  # started after the taker: they stand by
            name, port = f"orchestrator{index}", free_port()
            self.processes[name] = spawn(name, [sys.executable, "-m", "services.orchestrator"],
                                         {**env, "LLMCHATLINKER_ORCHESTRATOR_PORT": str(port)}, port, self.log_dir)
            await wait_until(self.processes[name], lambda a=self.processes[name].address: grpc_serving(a))

    def check_alive(self) -> None:
        for process in self.processes.values():
            process.check_alive()

    def stop(self) -> None:
        # The front door first, so no unit sees a call after it has gone.
        for name in reversed(list(self.processes)):
            self.processes[name].stop()
        if self._data_dir:
            shutil.rmtree(self._data_dir, ignore_errors=True)
        if self._pg_database:
            _drop_pg_database(self.options.postgres_url, self._pg_database)


def _pg_connect(server_url: str):
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    connection = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username,
                                  password=url.password, dbname="postgres")
    connection.autocommit = True
    return connection


_DATABASES = itertools.count(1)


def _create_pg_database(server_url: str) -> str:
    """A database of the bench's own, so other sessions' schemas are never touched."""
    name = f"llmchatlinker_bench_{os.getpid()}_{next(_DATABASES)}"  # one per suite: a run may start several
    with contextlib.closing(_pg_connect(server_url)) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name}")
    return name


def _drop_pg_database(server_url: str, name: str) -> None:
    with contextlib.suppress(Exception), contextlib.closing(_pg_connect(server_url)) as connection, \
            connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def delete_queues(amqp_url: str, names: list[str]) -> None:
    """Removes the bench's own queues from the broker, so runs leave nothing behind."""
    import pika

    with contextlib.suppress(Exception):
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
        connection.close()
