"""A real suite for the client tests: the five services started by the launcher on free ports, with
SQLite files, and the test kit's stand-in LLM."""

import collections
import threading
import uuid

import pytest

from services import launcher
from testkit import run_in_thread
from testkit.backends import AMQP_URL, delete_queues, require_rabbitmq
from testkit.ports import free_ports
from testkit.suite import RunningSuite, suite_environment

READY_TIMEOUT_SECONDS = 90


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
    processes, running = start_suite(suite_environment(tmp_path_factory.mktemp("suite") / "data"))
    yield running
    processes.stop()


@pytest.fixture(scope="session")
def llm_server():
    with run_in_thread() as server:
        yield server


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

