"""The README's RabbitMQ setup for the legacy path: a vhost, the orchestrator's user, and a user for
legacy clients that can publish instructions and read its own replies, and nothing else."""

import asyncio
import contextlib
import shutil
import subprocess
import urllib.parse
import uuid

import pika
import pika.exceptions
import pytest

from services.orchestrator.server import build_server
from services.orchestrator.tests.conftest import LegacyClient
from testkit.backends import unavailable

# The permissions the README gives (configure, write, read).
ORCHESTRATOR_PERMISSIONS = (".*", ".*", ".*")
LEGACY_PERMISSIONS = (r"^(instruction_queue|amq\.gen-.*)$", r"^amq\.default$", r"^amq\.gen-.*$")


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def vhost(amqp_url):
    """A vhost with an orchestrator user and a legacy user, as the README sets them up; removed after."""
    if shutil.which("rabbitmqctl") is None:
        unavailable("no rabbitmqctl on this machine to set up users and a vhost")
    name, password = f"llmchatlinker_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    users = {"orchestrator": f"{name}_orchestrator", "legacy": f"{name}_legacy"}
    try:
        rabbitmqctl("add_vhost", name)
        for role, permissions in (("orchestrator", ORCHESTRATOR_PERMISSIONS), ("legacy", LEGACY_PERMISSIONS)):
            rabbitmqctl("add_user", users[role], password)
            rabbitmqctl("set_permissions", "-p", name, users[role], *permissions)
    except subprocess.CalledProcessError as error:
        unavailable(f"rabbitmqctl cannot set up users here: {error.stderr.decode(errors='replace').strip()}")
    host = urllib.parse.urlsplit(amqp_url).netloc.rpartition("@")[2]
    yield {role: f"amqp://{user}:{password}@{host}/{name}" for role, user in users.items()}
    for user in users.values():
        with contextlib.suppress(subprocess.CalledProcessError):
            rabbitmqctl("delete_user", user)
    with contextlib.suppress(subprocess.CalledProcessError):
        rabbitmqctl("delete_vhost", name)


def refused(url: str, queue: str) -> bool:
    """Whether the broker refuses this user a consumer on `queue`."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().basic_consume(queue, lambda *_: None)
        return False
    except pika.exceptions.ChannelClosedByBroker as error:
        return error.reply_code in (403, 405)
    finally:
        with contextlib.suppress(Exception):
            connection.close()


async def test_a_legacy_user_publishes_and_reads_its_replies_but_reads_no_other_queue(suite, vhost):
    queue = "instruction_queue"  # what the legacy permissions name, as legacy clients declare it
    server = await build_server(suite.settings(queue, vhost["orchestrator"], auth="keys")).start()
    try:
        client = await asyncio.to_thread(LegacyClient, vhost["legacy"], queue)
        try:
            listed = await asyncio.to_thread(client.call, "USER_LIST", {})
            added = await asyncio.to_thread(client.call, "LLM_PROVIDER_ADD",
                                            {"name": "p", "api_endpoint": "http://h/v1"})
        finally:
            client.close()
        assert listed["status"] == "success"
        assert added["status"] == "error" and "app" in added["message"]  # the queue role, not admin
        for other in (queue, queue + ".dead", server.transport.reply_queue):
            assert await asyncio.to_thread(refused, vhost["legacy"], other), other
    finally:
        await server.stop(grace=5)
