"""Fetch on real RabbitMQ: the queue legacy clients declare, confirms, prefetch, acks and reconnects."""

import asyncio
import json

import pytest

from services.orchestrator.queue.amqp import AmqpQueue, Backoff
from services.orchestrator.queue.handoff import Handoff
from services.orchestrator.queue.transport import INSTRUCTION_QUEUE_ARGUMENTS, Message


class Inbox:
    def __init__(self):
        self.instructions: list[Message] = []
        self.replies: list[Message] = []


@pytest.fixture
async def consumer(amqp_url, queue_name, replies_on):
    """Starts AmqpQueue consumers (on the broker or through a proxy URL); closes them after."""
    started = []

    async def start(url=amqp_url, prefetch=8):
        inbox = Inbox()
        transport = AmqpQueue(url, queue_name, prefetch, replica_id=f"r{len(started)}")
        replies_on(transport.reply_queue)
        transport.start(inbox.instructions.append, inbox.replies.append)
        await transport.ready(30)
        started.append(transport)
        return transport, inbox

    yield start
    for transport in started:
        await transport.close()


def test_handoff_runs_a_burst_of_calls_in_order_on_one_wake_up():
    wakes, ran = [], []
    handoff = Handoff(wakes.append)
    for i in range(5):
        handoff.call(ran.append, i)
    assert len(wakes) == 1 and ran == []
    wakes.pop()()  # the target thread runs the batch
    assert ran == [0, 1, 2, 3, 4]
    handoff.call(ran.append, 5)
    assert len(wakes) == 1


def test_backoff_grows_to_its_cap_with_jitter_and_resets():
    backoff = Backoff(first=0.25, cap=4.0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0.125 <= d <= 4.0 for d in delays)
    assert delays[-1] >= 2.0  # capped ceiling 4, jitter keeps the upper half
    backoff.reset()
    assert backoff.next_delay() <= 0.25


async def test_declares_the_queue_the_way_legacy_clients_do(consumer, legacy, blocking_call):
    # A legacy client declared it first, durable with no arguments; we start on it, and a legacy
    # client declaring it after us still succeeds.
    await blocking_call(legacy)
    transport, _ = await consumer()
    later = await blocking_call(legacy)
    assert await blocking_call(later.message_count, transport.queue) == 0
    assert INSTRUCTION_QUEUE_ARGUMENTS == {}


async def test_delivers_properties_and_acks_only_when_told(consumer, legacy, blocking_call, eventually):
    transport, inbox = await consumer()
    client = await blocking_call(legacy)
    correlation_id = await blocking_call(client.send, "USER_LIST", message_id="m-1")
    await eventually(lambda: inbox.instructions, what="delivery")
    message = inbox.instructions[0]
    assert json.loads(message.body)["type"] == "USER_LIST"
    assert (message.correlation_id, message.message_id, message.reply_to) == (correlation_id, "m-1", client.reply_queue)
    assert not message.redelivered

    await transport.publish(message.reply_to, Message(body=b"{}", correlation_id=correlation_id))
    assert await blocking_call(client.wait, [correlation_id])
    transport.ack(message)


async def test_prefetch_bounds_unacknowledged_deliveries(consumer, legacy, blocking_call, eventually):
    transport, inbox = await consumer(prefetch=3)
    client = await blocking_call(legacy)
    for _ in range(10):
        await blocking_call(client.send, "USER_LIST")
    await eventually(lambda: len(inbox.instructions) == 3, what="three deliveries")
    await eventually(lambda: asyncio.to_thread(client.message_count, transport.queue), what="ready count")
    assert await blocking_call(client.message_count, transport.queue) == 7
    for message in list(inbox.instructions):
        transport.ack(message)
    await eventually(lambda: len(inbox.instructions) == 6, what="three more deliveries")


async def test_reconnects_and_gets_back_what_was_not_acknowledged(consumer, proxy, legacy, blocking_call, eventually):
    transport, inbox = await consumer(url=proxy.url)
    client = await blocking_call(legacy)
    await blocking_call(client.send, "USER_LIST", message_id="kept")
    await eventually(lambda: inbox.instructions, what="first delivery")
    first = inbox.instructions[0]

    proxy.cut()
    await eventually(lambda: len(inbox.instructions) == 2, what="redelivery after reconnect")
    again = inbox.instructions[1]
    assert (again.message_id, again.redelivered) == ("kept", True)
    transport.ack(first)  # its delivery tag died with the old connection: dropped, no channel error
    transport.ack(again)
    await transport.publish(client.reply_queue, Message(body=b"{}", correlation_id="after-reconnect"))
    assert await blocking_call(client.wait, ["after-reconnect"])
    assert await blocking_call(client.message_count, transport.queue) == 0
