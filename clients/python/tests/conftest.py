"""A real suite for the client tests: the five services started by the launcher on free ports, with
SQLite files, and the test kit's stand-in LLM."""

import collections
import dataclasses
import os
import threading
import uuid

import pytest

from services import launcher
from testkit import run_in_thread
from testkit.backends import AMQP_URL, delete_queues, require_rabbitmq
from testkit.ports import free_ports

READY_TIMEOUT_SECONDS = 90


@dataclasses.dataclass(frozen=True)
class RunningSuite:
    environ: dict[str, str]
    output: collections.deque

    def address(self, service: str) -> str:
        return launcher.address(service, self.environ)

    @property
    def orchestrator(self) -> str:
        return self.address("orchestrator")


def start_suite(environ: dict[str, str], services=launcher.SERVICES):
    output: collections.deque[str] = collections.deque(maxlen=400)
    suite = launcher.Suite(environ, output.append, services=services)
    suite.start()
    try:
        suite.wait_until_ready(READY_TIMEOUT_SECONDS, threading.Event())
    except BaseException as error:
        suite.stop()
        raise RuntimeError(f"the suite did not come up: {error}\n" + "\n".join(output)) from None
    return suite, RunningSuite(environ, output)


@pytest.fixture(scope="session")
def suite(tmp_path_factory):
    """The five services, on SQLite files and the in-process queue."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("LLMCHATLINKER_")}
    for service, port in zip(launcher.SERVICES, free_ports(len(launcher.SERVICES))):
        environ[launcher.variable(service, "PORT")] = str(port)
    environ["LLMCHATLINKER_DATA_DIR"] = str(tmp_path_factory.mktemp("suite") / "data")
    processes, running = start_suite(environ)
    yield running
    processes.stop()


@pytest.fixture(scope="session")
def llm_server():
    with run_in_thread() as server:
        yield server


@pytest.fixture
def unique():
    """A fresh name with a readable prefix: tests share one suite."""
    return lambda prefix: f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def amqp_queue():
    """A queue of the test's own, so that other consumers of instruction_queue never see its messages."""
    return f"test_instructions_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def amqp_orchestrator(suite, amqp_queue):
    """A second orchestrator in front of the suite's units, consuming `amqp_queue` on real RabbitMQ."""
    require_rabbitmq()
    environ = dict(suite.environ, LLMCHATLINKER_AMQP_URL=AMQP_URL, LLMCHATLINKER_QUEUE=amqp_queue,
                   LLMCHATLINKER_ORCHESTRATOR_PORT=str(free_ports(1)[0]))
    processes, running = start_suite(environ, services=("orchestrator",))
    yield running
    processes.stop()
    delete_queues(AMQP_URL, [amqp_queue, amqp_queue + ".dead"])

