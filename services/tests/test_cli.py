"""The llmchatlinker command: `up` brings the five services up and down together, `serve` runs one."""

import importlib.metadata
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import grpc
import pytest

from llmchatlinker.client import Client
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb
from llmchatlinker.user.v1 import user_service_pb2 as user_pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as user_grpc
from services import healthcheck, launcher
from testkit.backends import POSTGRES_URL, require_postgres, require_rabbitmq
from testkit.ports import free_ports
from testkit.suite import suite_environment

READY_LINE = "llmchatlinker: the suite is up"
CHILD_LINE = re.compile(r"^\s+(\w+)\s+(\S+:\d+)\s+pid (\d+)")


class Launched:
    """`llmchatlinker ...` as a child process, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "services.cli", *args], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.output.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} in the output:\n" + "\n".join(self.output[-60:]))

    def children(self) -> dict[str, tuple[str, int]]:
        """name -> (address, pid), from the lines printed after the ready line."""
        found = {}
        deadline = time.monotonic() + 5
        while len(found) < len(launcher.SERVICES) and time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.output.append(line)
            match = CHILD_LINE.match(line)
            if match:
                found[match.group(1)] = (match.group(2), int(match.group(3)))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if is_running(pid)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


@pytest.fixture
def launched():
    started: list[Launched] = []

    def launch(args: list[str], env: dict[str, str]) -> Launched:
        started.append(Launched(args, env))
        return started[-1]

    yield launch
    for each in started:
        each.stop()


def test_up_brings_all_five_services_to_serving_and_sigterm_stops_them(tmp_path, launched):
    env = suite_environment(tmp_path / "data")
    del env["LLMCHATLINKER_INTERNAL_TOKEN"]  # as `make run` starts: `up` makes one up
    suite = launched(["up"], env)
    suite.wait_for_line(READY_LINE)
    children = suite.children()

    assert set(children) == set(launcher.SERVICES)
    for service, (address, _pid) in children.items():
        assert address == f"127.0.0.1:{env[launcher.variable(service, 'PORT')]}"
        assert healthcheck.is_serving(address), service
    assert sorted(path.name for path in (tmp_path / "data").iterdir() if path.suffix == ".db") == sorted(
        f"{unit}.db" for unit in launcher.UNITS)
    # The units take calls from the orchestrator only (a token `up` made up), even on loopback.
    with grpc.insecure_channel(children["user_unit"][0]) as channel, pytest.raises(grpc.RpcError) as refused:
        user_grpc.UserServiceStub(channel).ListUsers(user_pb.ListUsersRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with Client(children["orchestrator"][0], timeout=60) as client:
        client.submit(orchestrator_pb.UserList())

    suite.process.send_signal(signal.SIGTERM)
    assert suite.process.wait(timeout=40) == 0
    assert wait_gone(pid for _address, pid in children.values()) == []


def test_up_stops_the_rest_and_fails_when_one_service_dies(tmp_path, launched):
    suite = launched(["up"], suite_environment(tmp_path / "data"))
    suite.wait_for_line(READY_LINE)
    children = suite.children()

    os.kill(children["chat_unit"][1], signal.SIGKILL)

    assert suite.process.wait(timeout=40) != 0
    assert wait_gone(pid for _address, pid in children.values()) == []


def test_up_fails_when_a_port_is_taken(tmp_path, launched):
    env = suite_environment(tmp_path / "data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["LLMCHATLINKER_DB_UNIT_PORT"])))
        taken.listen()
        suite = launched(["up", "--ready-timeout", "60"], env)
        suite.wait_for_line(f"port in use: db_unit 127.0.0.1:{env['LLMCHATLINKER_DB_UNIT_PORT']}")
        assert suite.process.wait(timeout=60) == 1
    assert "the suite is up" not in "\n".join(suite.output)


def test_a_second_up_on_the_same_ports_refuses_to_start_and_leaves_the_first_serving(tmp_path, launched):
    env = suite_environment(tmp_path / "data")
    first = launched(["up"], env)
    first.wait_for_line(READY_LINE)
    second = launched(["up"], suite_environment(tmp_path / "other") | {
        name: value for name, value in env.items() if name.endswith("_PORT")})
    second.wait_for_line("port in use: user_unit")
    assert second.process.wait(timeout=60) == 1
    assert first.process.poll() is None
    assert all(healthcheck.is_serving(address, timeout=2) for address, _pid in first.children().values())


def test_up_on_postgresql_gives_each_unit_its_own_schema(tmp_path, launched):
    require_postgres()
    import sqlalchemy as sa

    database = f"llmchatlinker_cli_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
    url = sa.engine.make_url(POSTGRES_URL).set(database=database)
    try:
        environ = suite_environment(tmp_path / "data", LLMCHATLINKER_DATABASE_URL=url.render_as_string(False))
        suite = launched(["up"], environ)
        suite.wait_for_line(READY_LINE)
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            schemas = set(connection.scalars(sa.text("SELECT schema_name FROM information_schema.schemata")))
        engine.dispose()
        assert set(launcher.UNITS) <= schemas
        assert not (tmp_path / "data").exists()
        suite.stop()
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()


def test_serve_runs_one_service_in_the_foreground_with_the_defaults(tmp_path, launched):
    env = suite_environment(tmp_path / "data")
    address = f"127.0.0.1:{env['LLMCHATLINKER_USER_UNIT_PORT']}"
    service = launched(["serve", "user_unit"], env)

    deadline = time.monotonic() + 60
    while not healthcheck.is_serving(address, timeout=1):
        assert service.process.poll() is None, "serve exited"
        assert time.monotonic() < deadline, "user_unit never became SERVING"
        time.sleep(0.2)
    assert (tmp_path / "data" / "user_unit.db").exists()

    service.process.send_signal(signal.SIGTERM)  # the service itself: serve replaced its process
    assert service.process.wait(timeout=30) == 0


# The defaults, without starting anything.

def test_units_default_to_one_sqlite_file_each_under_the_data_dir(tmp_path):
    env = launcher.service_environment("chat_unit", {"LLMCHATLINKER_DATA_DIR": str(tmp_path)})
    assert env["LLMCHATLINKER_CHAT_UNIT_DATABASE_URL"] == f"sqlite:///{tmp_path}/chat_unit.db"


def test_a_shared_postgresql_url_gives_each_unit_its_own_schema():
    shared = "postgresql+psycopg2://app@db:5432/llmchatlinker"
    env = launcher.service_environment("llm_unit", {"LLMCHATLINKER_DATABASE_URL": shared})
    assert env["LLMCHATLINKER_LLM_UNIT_DATABASE_URL"] == shared
    assert env["LLMCHATLINKER_LLM_UNIT_DATABASE_SCHEMA"] == "llm_unit"


def test_a_unit_url_or_schema_of_its_own_wins_over_the_shared_url():
    environ = {"LLMCHATLINKER_DATABASE_URL": "postgresql://shared/db",
               "LLMCHATLINKER_USER_UNIT_DATABASE_URL": "postgresql://users/db",
               "LLMCHATLINKER_DB_UNIT_DATABASE_SCHEMA": "ledger"}
    assert launcher.service_environment("user_unit", environ)["LLMCHATLINKER_USER_UNIT_DATABASE_URL"] == \
        "postgresql://users/db"
    assert launcher.service_environment("db_unit", environ)["LLMCHATLINKER_DB_UNIT_DATABASE_SCHEMA"] == "ledger"


def test_a_shared_sqlite_url_is_refused():
    with pytest.raises(SystemExit, match="PostgreSQL"):
        launcher.service_environment("user_unit", {"LLMCHATLINKER_DATABASE_URL": "sqlite:///one.db"})


def test_up_makes_up_an_internal_token_per_run_unless_one_is_set():
    first, second = launcher.with_internal_token({}), launcher.with_internal_token({})
    made_up = first["LLMCHATLINKER_INTERNAL_TOKEN"]
    assert re.fullmatch(r"[0-9a-f]{64}", made_up) and made_up != second["LLMCHATLINKER_INTERNAL_TOKEN"]
    mine = {"LLMCHATLINKER_INTERNAL_TOKEN": "mine-" + "x" * 40}
    assert launcher.with_internal_token(mine) == mine
    with pytest.raises(SystemExit, match="LLMCHATLINKER_INTERNAL_TOKEN\" must be at least 32 characters"):
        launcher.with_internal_token({"LLMCHATLINKER_INTERNAL_TOKEN": "short"})


def test_up_refuses_tls_settings_naming_them():
    with pytest.raises(SystemExit, match="^LLMCHATLINKER_TLS_CERT, LLMCHATLINKER_UNIT_TLS_CA: TLS is for services run "
                                         "one by one"):
        launcher.Suite({"LLMCHATLINKER_TLS_CERT": "cert.pem", "LLMCHATLINKER_UNIT_TLS_CA": "ca.pem"}, print)


def test_the_orchestrator_is_pointed_at_the_units_ports():
    environ = {"LLMCHATLINKER_HOST": "0.0.0.0", "LLMCHATLINKER_CHAT_UNIT_PORT": "6000",
               "LLMCHATLINKER_DB_UNIT_ADDR": "ledger.internal:7000"}
    env = launcher.service_environment("orchestrator", environ)
    assert env["LLMCHATLINKER_USER_UNIT_ADDR"] == "127.0.0.1:50052"
    assert env["LLMCHATLINKER_CHAT_UNIT_ADDR"] == "127.0.0.1:6000"
    assert env["LLMCHATLINKER_LLM_UNIT_ADDR"] == "127.0.0.1:50054"
    assert env["LLMCHATLINKER_DB_UNIT_ADDR"] == "ledger.internal:7000"
    assert "LLMCHATLINKER_AMQP_URL" not in env  # unset: the orchestrator's in-process queue


@pytest.mark.parametrize("setting, words", [
    ("LLMCHATLINKER_AMQP_URL", "orchestrator: RabbitMQ at 127.0.0.1:5672 refuses the credentials of LLMCHATLINKER_AMQP_URL"),
    ("LLMCHATLINKER_DATABASE_URL", "cannot open the database postgresql+psycopg2://postgres:***@127.0.0.1:"),
], ids=["wrong-rabbitmq-password", "postgresql-out-of-reach"])
def test_up_fails_within_seconds_with_one_readable_line_when_the_broker_or_database_refuses(
        tmp_path, launched, setting, words):
    if setting == "LLMCHATLINKER_AMQP_URL":
        require_rabbitmq()
        value = "amqp://guest:not-the-password@127.0.0.1:5672/%2F"
    else:
        value = f"postgresql+psycopg2://postgres:s3cret@127.0.0.1:{free_ports(1)[0]}/postgres"
    started = time.monotonic()
    suite = launched(["up"], suite_environment(tmp_path / "data", **{setting: value}))
    suite.wait_for_line(words, timeout=30)
    assert suite.process.wait(timeout=30) == 1
    assert time.monotonic() - started < 30
    output = "\n".join(suite.output)
    assert "Traceback" not in output and "s3cret" not in output and "not-the-password" not in output


def test_version_prints_the_installed_version():
    answer = subprocess.run([sys.executable, "-m", "services.cli", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert answer.returncode == 0 and answer.stdout.strip() == f"llmchatlinker {importlib.metadata.version('llmchatlinker-suite')}"


def test_status_of_a_suite_that_is_not_running_says_so_and_fails(tmp_path):
    environ = suite_environment(tmp_path)
    answer = subprocess.run([sys.executable, "-m", "services.cli", "status", "--json"], env=environ,
                            capture_output=True, text=True, timeout=60)
    report = json.loads(answer.stdout)
    assert answer.returncode == 1 and not report["healthy"]
    assert {entry["health"] for entry in report["services"].values()} == {"UNAVAILABLE"}
    assert report["orchestrator"] is None and report["queue"] is None
