"""Three orchestrator replicas on one queue, on RabbitMQ and PostgreSQL: 1,000 legacy generations
over 50 chats, the replica taking the instructions killed with SIGKILL mid-run. Every instruction
is answered with success, every chat's history holds each input once, in the order it was sent,
and the standing-by replicas' front doors serve meanwhile."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from llmchatlinker.client import Client
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services import healthcheck, launcher
from testkit import run_in_thread
from testkit.backends import AMQP_URL
from testkit.legacy_amqp import LegacyAmqpClient
from testkit.ports import free_ports
from testkit.suite import on_rabbitmq_and_postgres

CHATS = 50
TURNS = 20  # per chat: 1,000 instructions
REPLICAS = 3
READY_SECONDS = 90


class Process:
    """`llmchatlinker <command>` as a child process, its output kept."""

    def __init__(self, command: list[str], environ: dict[str, str]):
        self.environ = environ
        self.process = subprocess.Popen([sys.executable, "-m", "services.cli", *command], env=environ,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, errors="replace")
        self.output: list[str] = []
        threading.Thread(target=lambda: self.output.extend(self.process.stdout), daemon=True).start()

    def wait_until_serving(self, services) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not all(healthcheck.is_serving(launcher.address(s, self.environ), timeout=1) for s in services):
            assert self.process.poll() is None and time.monotonic() < deadline, "".join(self.output[-80:])
            time.sleep(0.2)

    def says(self, words: str) -> bool:
        return any(words in line for line in list(self.output))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def replicas_environment(tmp_path):
    # `up`'s own orchestrator takes a queue nobody uses: the replicas under test are started apart.
    with on_rabbitmq_and_postgres("replicas", tmp_path / "data") as (environ, queue):
        environ["LLMCHATLINKER_QUEUE"] = queue + "_unused"
        yield environ, queue


def _replica_environment(suite_environ: dict[str, str], queue: str) -> dict[str, str]:
    environ = {name: value for name, value in suite_environ.items() if not name.endswith("_PORT")}
    environ.update({
        "LLMCHATLINKER_QUEUE": queue,
        launcher.variable("orchestrator", "PORT"): str(free_ports(1)[0]),
        **{launcher.variable(unit, "ADDR"): launcher.address(unit, suite_environ) for unit in launcher.UNITS},
    })
    return environ


def test_killing_the_replica_that_takes_the_instructions_keeps_every_chat_in_order(replicas_environment):
    suite_environ, queue = replicas_environment
    units = Process(["up"], suite_environ)
    replicas: list[Process] = []
    legacy = None
    try:
        units.wait_until_serving(launcher.SERVICES)
        for _ in range(REPLICAS):  # one after the other: the first takes the instructions
            replica = Process(["serve", "orchestrator"], _replica_environment(suite_environ, queue))
            replica.wait_until_serving(["orchestrator"])
            replicas.append(replica)
        taker, standing_by = replicas[0], replicas[1:]
        assert all(replica.says("standing by") for replica in standing_by)

        with run_in_thread() as provider, Client(launcher.address("orchestrator", standing_by[0].environ)) as client:
            # Set up through a standing-by replica's front door: it queues, the taker runs, it answers.
            user = client.submit(pb.UserCreate(username=f"replicas_{uuid.uuid4().hex[:8]}")).user
            provider_id = client.submit(pb.LlmProviderAdd(name=f"replicas_{uuid.uuid4().hex[:8]}",
                                                          api_endpoint=provider.openai_url)).provider.provider_id
            llm_id = client.submit(pb.LlmAdd(provider_id=provider_id, llm_name="echo")).llm.llm_id
            chat_ids = [client.submit(pb.ChatCreate(title=f"chat {c}", user_ids=[user.user_id])).chat.chat.chat_id
                        for c in range(CHATS)]

            legacy = LegacyAmqpClient(AMQP_URL, queue)
            sent = {}
            for turn in range(TURNS):
                for c, chat_id in enumerate(chat_ids):
                    text = f"{c}:{turn}"
                    sent[legacy.send("LLM_RESPONSE_GENERATE", {
                        "user_id": user.user_id, "chat_id": chat_id, "provider_id": provider_id,
                        "llm_id": llm_id, "user_input": text}, message_id=f"replicas-{text}")] = text
            while len(legacy.replies) < 300:
                legacy.pump(0.01)
            os.kill(taker.process.pid, signal.SIGKILL)
            taker.process.wait(10)
            answered_before = len(legacy.replies)

            legacy.wait(list(sent), timeout=240)
            legacy.pump(1)  # late duplicates, if any, arrive now
            histories = {chat_id: client.submit(pb.ChatLoad(chat_id=chat_id, message_page_size=100)).chat.messages
                         for chat_id in chat_ids}
    finally:
        if legacy is not None:
            legacy.close()
        for process in [*replicas, units]:
            process.stop()

    assert answered_before < len(sent), "the kill came after everything was done"
    assert any(replica.says("taken over") for replica in standing_by)
    for correlation_id, text in sent.items():
        replies = legacy.replies[correlation_id]
        assert all(reply["status"] == "success" for reply in replies), (text, replies)
        assert {reply["data"]["llm_response"]["message_id"] for reply in replies} == \
               {replies[0]["data"]["llm_response"]["message_id"]}, text
        assert replies[0]["data"]["llm_response"]["content"] == f"echo: {text}"
    for c, chat_id in enumerate(chat_ids):
        contents = [message.content for message in histories[chat_id]]
        expected = [part for turn in range(TURNS) for part in (f"{c}:{turn}", f"echo: {c}:{turn}")]
        assert contents == expected, f"chat {c}: {contents}"
