"""The suite as users run it: `llmchatlinker up` on free ports, with RabbitMQ (a queue of this
session's own) and PostgreSQL (schemas of this session's own, dropped after), stand-in LLM
providers over real HTTP, and the clients a user would hold: the typed client and a raw pika client
speaking the original JSON format."""

import collections
import contextlib
import dataclasses
import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.client import Client
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services import healthcheck, launcher
from testkit import run_in_thread
from testkit.backends import AMQP_URL, delete_queues
from testkit.ports import free_ports
from testkit.legacy_amqp import LegacyAmqpClient
from testkit.suite import RunningSuite, on_rabbitmq_and_postgres

READY_TIMEOUT_SECONDS = 90
# The deadline of the replicas that meet stalling and dripping providers: short, so they are cut
# off quickly. The main suite keeps the default, so honest slow replies are never cut.
SHORT_GENERATION_TIMEOUT_MS = 1500
REPLY_TIMEOUT_SECONDS = 60


@contextlib.contextmanager
def running(command: list[str], environ: dict[str, str], services):
    """Runs `llmchatlinker <command>` until each of `services` is SERVING; SIGTERM after.

    A plain child process rather than launcher.Suite in this process: Suite's preexec_fn runs
    gRPC's fork hooks in its children, which then sometimes abort once gRPC is in use here."""
    output: collections.deque[str] = collections.deque(maxlen=400)
    process = subprocess.Popen([sys.executable, "-m", "services.cli", *command], env=environ,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace")
    copier = threading.Thread(target=lambda: output.extend(line.rstrip() for line in process.stdout), daemon=True)
    copier.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        waiting = [launcher.address(service, environ) for service in services]
        while waiting:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llmchatlinker {' '.join(command)} did not come up (exit code "
                                   f"{process.poll()}):\n" + "\n".join(output))
            waiting = [address for address in waiting if not healthcheck.is_serving(address, timeout=1.0)]
            time.sleep(0.1)
        yield output
    finally:
        process.terminate()
        try:
            process.wait(timeout=2 * launcher.STOP_GRACE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        copier.join(timeout=5)


@pytest.fixture(scope="session")
def suite(tmp_path_factory):
    """`llmchatlinker up`: the five services as separate processes, on RabbitMQ and PostgreSQL."""
    # A provider or unit out of reach is waited out for 1.5 s here rather than 120 s, so the tests
    # of the final UNAVAILABLE answer stay quick (services/orchestrator/tests/test_outages.py
    # covers the waiting itself).
    with on_rabbitmq_and_postgres("e2e", tmp_path_factory.mktemp("suite") / "data",
                                  LLMCHATLINKER_OUTAGE_WAIT_MS="1500") as (environ, queue), \
            running(["up"], environ, launcher.SERVICES) as output:
        yield RunningSuite(environ, output, AMQP_URL, queue)


@pytest.fixture(scope="session")
def short_deadline(suite):
    """`llmchatlinker serve` of a second llm_unit and orchestrator, in front of the suite's other
    units and data as a second replica pair would be, with a short generation deadline and a queue
    of their own."""
    queue = suite.queue + "_short"
    environ = {name: value for name, value in suite.environ.items() if not name.endswith("_PORT")}
    llm_port, orchestrator_port = free_ports(2)
    environ.update({
        launcher.variable("llm_unit", "PORT"): str(llm_port),
        launcher.variable("orchestrator", "PORT"): str(orchestrator_port),
        "LLMCHATLINKER_QUEUE": queue,
        "LLMCHATLINKER_LLM_UNIT_GENERATION_TIMEOUT_MS": str(SHORT_GENERATION_TIMEOUT_MS),
        **{launcher.variable(unit, "ADDR"): launcher.address(unit, suite.environ)
           for unit in ("user_unit", "chat_unit", "db_unit")},
    })
    try:
        with running(["serve", "llm_unit"], environ, ["llm_unit"]), \
                running(["serve", "orchestrator"], environ, ["orchestrator"]) as output:
            yield RunningSuite(environ, output, suite.amqp_url, queue)
    finally:
        delete_queues(suite.amqp_url, [queue, queue + ".dead"])


@pytest.fixture(scope="session")
def client(suite):
    with Client(suite.orchestrator, timeout=REPLY_TIMEOUT_SECONDS) as client:
        yield client


@pytest.fixture(scope="session")
def short_client(short_deadline):
    with Client(short_deadline.orchestrator, timeout=REPLY_TIMEOUT_SECONDS) as client:
        yield client


@pytest.fixture
def provider_server():
    """A stand-in LLM of this test's own, so its stats and request log are this test's alone."""
    with run_in_thread() as server:
        yield server


def testkit_get(server, what: str):
    """GET /_testkit/<what> (stats or requests) over HTTP, as any user of the stand-in would."""
    with urllib.request.urlopen(f"{server.base_url}/_testkit/{what}", timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def testkit():
    return testkit_get


@dataclasses.dataclass(frozen=True)
class Conversation:
    """A user, a chat they belong to, and a model of one provider, ready to generate."""

    user_id: str
    chat_id: str
    provider_id: str
    provider_name: str
    llm_id: str
    llm_name: str
    api_key: str

    def generate(self, user_input: str, user_id: str | None = None) -> pb.LlmResponseGenerate:
        return pb.LlmResponseGenerate(user_id=user_id or self.user_id, chat_id=self.chat_id,
                                      provider_id=self.provider_id, llm_id=self.llm_id, user_input=user_input)

    def legacy_generate(self, user_input: str) -> dict:
        return {"user_id": self.user_id, "chat_id": self.chat_id, "provider_id": self.provider_id,
                "llm_id": self.llm_id, "user_input": user_input}


@pytest.fixture
def conversation(client, unique):
    """conversation(endpoint, model="echo", kind=..., **llm_options): a fresh user, chat, provider
    (with an API key, so tests can check it never shows) and model."""

    def make(endpoint: str, model: str = "echo", kind=llm_pb2.PROVIDER_KIND_OPENAI, **llm_options) -> Conversation:
        user = client.submit(pb.UserCreate(username=unique("user"))).user
        chat = client.submit(pb.ChatCreate(title="end to end", user_ids=[user.user_id])).chat.chat
        name, key = unique("provider"), f"sk-{uuid.uuid4().hex}"
        provider = client.submit(pb.LlmProviderAdd(name=name, api_endpoint=endpoint, api_key=key, kind=kind)).provider
        llm = client.submit(pb.LlmAdd(provider_id=provider.provider_id, llm_name=model, **llm_options)).llm
        return Conversation(user.user_id, chat.chat_id, provider.provider_id, name, llm.llm_id, model, key)

    return make


@pytest.fixture
def chat_messages(client):
    """The chat's messages as CHAT_LOAD shows them, oldest first, as (role name, content, id)."""

    def load(chat_id: str) -> list[tuple[str, str, str]]:
        messages = client.submit(pb.ChatLoad(chat_id=chat_id)).chat.messages
        return [(_ROLES[m.role], m.content, m.message_id) for m in messages]

    return load


_ROLES = {chat_pb2.MESSAGE_ROLE_USER: "user", chat_pb2.MESSAGE_ROLE_ASSISTANT: "assistant",
          chat_pb2.MESSAGE_ROLE_SYSTEM: "system"}




@pytest.fixture
def legacy(suite):
    client = LegacyAmqpClient(suite.amqp_url, suite.queue)
    yield client
    client.close()


@pytest.fixture
def short_legacy(short_deadline):
    client = LegacyAmqpClient(short_deadline.amqp_url, short_deadline.queue)
    yield client
    client.close()

