"""Starts the suite's services as child processes, with the embedded defaults filled in.

Each service's own config stays strict (a unit without a database URL refuses to start); the
defaults live here: SQLite files per unit under LLMCHATLINKER_DATA_DIR, or one schema per unit in
the PostgreSQL database at LLMCHATLINKER_DATABASE_URL, unit addresses for the orchestrator, and,
for a suite started here, an internal token of its own.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from services import healthcheck
from services.chat_unit import config as chat_unit_config
from services.common import config, deadlines
from services.db_unit import config as db_unit_config
from services.llm_unit import config as llm_unit_config
from services.orchestrator import config as orchestrator_config
from services.user_unit import config as user_unit_config

UNITS = ("user_unit", "chat_unit", "llm_unit", "db_unit")
# Started in this order and stopped in reverse: the front door goes first on the way down.
SERVICES = (*UNITS, "orchestrator")
DEFAULT_PORTS = {
    "orchestrator": orchestrator_config.DEFAULT_PORT,
    "user_unit": user_unit_config.DEFAULT_PORT,
    "chat_unit": chat_unit_config.DEFAULT_PORT,
    "llm_unit": llm_unit_config.DEFAULT_PORT,
    "db_unit": db_unit_config.DEFAULT_PORT,
}
DEFAULT_HOST = "127.0.0.1"
DEFAULT_DATA_DIR = "var/data"
TEST_LLM = "test_llm"
DEFAULT_TEST_LLM_PORT = 8089
STOP_GRACE_SECONDS = deadlines.LAUNCHER_STOP_GRACE_SECONDS
READY_TIMEOUT_SECONDS = deadlines.LAUNCHER_READY_SECONDS
_POLL_SECONDS = 0.2
T = TypeVar("T")


def variable(service: str, setting: str) -> str:
    """LLMCHATLINKER_USER_UNIT_DATABASE_URL and the like."""
    return config.PREFIX + _setting(service, setting)


def _setting(service: str, setting: str) -> str:
    """USER_UNIT_DATABASE_URL and the like: a name as services.common.config's readers take it."""
    return f"{service.upper()}_{setting}"


def _read(reader: Callable[..., T], *args, **kwargs) -> T:
    """A setting read through services.common.config; a bad one ends the command, naming it."""
    try:
        return reader(*args, **kwargs)
    except config.SettingError as error:
        raise SystemExit(str(error)) from None


def port(service: str, environ: Mapping[str, str]) -> int:
    return _read(config.port, _setting(service, "PORT"), DEFAULT_PORTS[service], environ)


def address(service: str, environ: Mapping[str, str]) -> str:
    """Where to reach a service started here: a wildcard listen host is reached on loopback."""
    host = config.optional("HOST", DEFAULT_HOST, environ)
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{port(service, environ)}"


def data_dir(environ: Mapping[str, str]) -> pathlib.Path:
    return pathlib.Path(config.optional("DATA_DIR", DEFAULT_DATA_DIR, environ)).resolve()


def service_environment(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment `service` runs with: `environ` plus the defaults for what it leaves unset."""
    if service not in SERVICES:
        raise SystemExit(f"unknown service {service!r}; one of: {', '.join(SERVICES)}")
    env = dict(environ)
    if service == "orchestrator":
        for unit in UNITS:
            if not config.optional(_setting(unit, "ADDR"), "", env):
                env[variable(unit, "ADDR")] = address(unit, environ)
        return env
    if config.optional(_setting(service, "DATABASE_URL"), "", env):
        return env
    url_name, schema_name = variable(service, "DATABASE_URL"), variable(service, "DATABASE_SCHEMA")
    shared_url = _read(config.url, "DATABASE_URL", schemes=config.DATABASE_SCHEMES, environ=env)
    if shared_url:
        if shared_url.lower().startswith("sqlite"):
            raise SystemExit(f"{config.PREFIX}DATABASE_URL is shared by the four units, so it must be a PostgreSQL "
                             f"URL; for SQLite files leave it unset (they go to {config.PREFIX}DATA_DIR)")
        env[url_name] = shared_url
        if not config.optional(_setting(service, "DATABASE_SCHEMA"), "", env):
            env[schema_name] = service  # one database, a schema per unit
    else:
        env[url_name] = f"sqlite:///{data_dir(environ) / (service + '.db')}"
    return env


def with_internal_token(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with LLMCHATLINKER_INTERNAL_TOKEN: the one set, else a random one for this run,
    shared by the services started here, so that even on loopback only the orchestrator can call
    the units (a process's environment is readable by its user only)."""
    if _read(config.internal_token, environ):
        return dict(environ)
    return {**environ, config.PREFIX + config.INTERNAL_TOKEN: secrets.token_hex(32)}


def refuse_tls(environ: Mapping[str, str]) -> None:
    """`up` runs the suite on this machine, where its readiness checks speak plaintext: TLS is for
    services run one by one (`llmchatlinker serve`)."""
    names = [config.PREFIX + name for name in (*config.SERVER_TLS_SETTINGS, *config.UNIT_TLS_SETTINGS)
             if config.optional(name, "", environ)]
    if names:
        raise SystemExit(f"{', '.join(names)}: TLS is for services run one by one (`llmchatlinker serve "
                         "SERVICE`); `up` runs the suite on this machine, its units guarded by a token of its own")


def describe_storage(environ: Mapping[str, str]) -> str:
    database = ("PostgreSQL, a schema per unit" if config.optional("DATABASE_URL", "", environ)
                else f"SQLite files in {data_dir(environ)}")
    queue = "RabbitMQ" if config.optional("AMQP_URL", "", environ) else "in-process queue"
    return f"{database}; {queue}"


def service_command(service: str) -> list[str]:
    return [sys.executable, "-m", f"services.{service}"]


@dataclasses.dataclass
class Child:
    name: str
    address: str
    process: subprocess.Popen
    ready: Callable[[], bool]

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()


class PortsInUse(RuntimeError):
    """Ports the suite would listen on are taken: nothing was started."""


def _free(host: str, port_number: int) -> bool:
    if port_number == 0:
        return True
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are no obstacle
        try:
            probe.bind((host.strip("[]"), port_number))
        except OSError:
            return False
    return True


class ServiceDied(RuntimeError):
    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} exited with code {child.exit_code}")
        self.child = child


class Suite:
    """The services as child processes; their output is copied line by line, prefixed by name."""

    def __init__(self, environ: Mapping[str, str], write: Callable[[str], None],
                 services: tuple[str, ...] = SERVICES, test_llm_port: int | None = None) -> None:
        refuse_tls(environ)
        self._environ = with_internal_token(environ)
        self._write = write
        self._services = services
        self._test_llm_port = test_llm_port
        self.children: list[Child] = []

    def start(self) -> None:
        # Every environment and every port first: a configuration error or a port in use must stop
        # us before anything is started.
        environments = {service: service_environment(service, self._environ) for service in self._services}
        self._check_ports()
        if self._test_llm_port is not None:
            llm_address = f"127.0.0.1:{self._test_llm_port}"
            self._spawn(TEST_LLM, llm_address, [sys.executable, "-m", "testkit.llm_server", "--host", "127.0.0.1",
                                                "--port", str(self._test_llm_port)],
                        self._environ, lambda: _accepts_connections(llm_address))
        for service in self._services:
            service_address = address(service, self._environ)
            self._spawn(service, service_address, service_command(service), environments[service],
                        lambda a=service_address: healthcheck.is_serving(a, timeout=1.0))

    def _check_ports(self) -> None:
        host = config.optional("HOST", DEFAULT_HOST, self._environ)
        wanted = [(service, host, port(service, self._environ)) for service in self._services]
        if self._test_llm_port is not None:
            wanted.append((TEST_LLM, "127.0.0.1", self._test_llm_port))
        taken = [f"{name} {where}:{number}" for name, where, number in wanted if not _free(where, number)]
        if taken:
            raise PortsInUse(f"port in use: {', '.join(taken)}; is another suite running? Stop it, or set "
                             f"{config.PREFIX}<SERVICE>_PORT")

    def _spawn(self, name: str, where: str, command: list[str], env: Mapping[str, str],
               ready: Callable[[], bool]) -> None:
        # Tethered: the child gets SIGTERM when the launcher dies, even by SIGKILL (Linux).
        process = subprocess.Popen(
            [sys.executable, "-m", "services.tether", str(os.getpid()), *command], env={**env, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace",
            # Its own process group: a Ctrl-C reaches the launcher only, which stops the suite in order.
            process_group=0,
        )
        self.children.append(Child(name, where, process, ready))
        threading.Thread(target=self._copy_output, args=(name, process), daemon=True).start()

    def _copy_output(self, name: str, process: subprocess.Popen) -> None:
        width = max(len(service) for service in (*SERVICES, TEST_LLM))
        for line in process.stdout:
            self._write(f"{name:<{width}} | {line.rstrip()}")

    def wait_until_ready(self, timeout: float, stop_requested: threading.Event) -> None:
        """Returns once every child is ready (health SERVING); raises ServiceDied or TimeoutError."""
        deadline = time.monotonic() + timeout
        waiting = list(self.children)
        while waiting and not stop_requested.is_set():
            self.raise_if_one_died()
            waiting = [child for child in waiting if not child.ready()]
            if waiting and time.monotonic() > deadline:
                names = ", ".join(child.name for child in waiting)
                raise TimeoutError(f"not SERVING after {timeout:g} s: {names}")
            if waiting:
                stop_requested.wait(_POLL_SECONDS)

    def raise_if_one_died(self) -> None:
        for child in self.children:
            if child.exit_code is not None:
                raise ServiceDied(child)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM in reverse start order (the orchestrator first, so no new work reaches the units),
        waiting up to `grace` each round, then SIGKILL for whatever is left."""
        orchestrator = [child for child in self.children if child.name == "orchestrator"]
        others = [child for child in reversed(self.children) if child.name != "orchestrator"]
        for group in (orchestrator, others):
            for child in group:
                if child.exit_code is None:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in group:
                try:
                    child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._write(f"{child.name} did not stop within {grace:g} s: killing it")
                    child.process.kill()
                    child.process.wait()


def _accepts_connections(where: str) -> bool:
    host, _, port_text = where.rpartition(":")
    try:
        with socket.create_connection((host, int(port_text)), timeout=1.0):
            return True
    except OSError:
        return False


def exec_service(service: str, environ: Mapping[str, str]) -> None:
    """Replaces this process with one service (so it receives the container's SIGTERM itself)."""
    env = service_environment(service, environ)
    command = service_command(service)
    sys.stdout.flush()
    os.execve(command[0], command, env)
