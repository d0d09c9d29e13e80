"""Replies on real RabbitMQ: persistent and confirmed only where a durable queue can keep them."""

import json
import time
import uuid

import pika

from services.orchestrator.queue.replies import reply_may_be_durable
from services.orchestrator.queue.transport import PERSISTENT, TRANSIENT, reply_queue_name


def test_only_queues_a_caller_named_may_be_durable():
    assert reply_may_be_durable("my_service.replies", "instruction_queue")
    assert not reply_may_be_durable("amq.gen-JzTY20BRgKO-HjmUJj0wLg", "instruction_queue")
    assert not reply_may_be_durable("amq.rabbitmq.reply-to.g1h2AA", "instruction_queue")
    assert not reply_may_be_durable(reply_queue_name("instruction_queue", "a1b2c3"), "instruction_queue")


async def test_a_reply_to_an_exclusive_server_named_queue_is_transient(
        suite, orchestrators, amqp_url, legacy, blocking_call):
    await orchestrators(suite, amqp_url)
    client = await blocking_call(legacy)
    correlation_id = await blocking_call(client.send, "USER_LIST")
    await blocking_call(client.wait, [correlation_id])
    [(props, body)] = client.replies[correlation_id]
    assert json.loads(body)["status"] == "success" and props.delivery_mode == TRANSIENT


async def test_a_reply_to_a_named_durable_queue_is_persistent(suite, orchestrators, amqp_url, queue_name,
                                                              blocking_call):
    await orchestrators(suite, amqp_url)
    reply_queue = f"test_{uuid.uuid4().hex[:10]}_durable_replies"

    def call_and_take() -> tuple:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        try:
            channel.queue_declare(reply_queue, durable=True)
            channel.basic_publish("", queue_name, json.dumps({"type": "USER_LIST", "data": {}}).encode(),
                                  pika.BasicProperties(reply_to=reply_queue, correlation_id="c1", delivery_mode=2))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                method, props, body = channel.basic_get(reply_queue, auto_ack=True)
                if method is not None:
                    return props, body
                connection.sleep(0.02)
            raise TimeoutError("no reply on the durable reply queue")
        finally:
            channel.queue_delete(reply_queue)
            connection.close()

    props, body = await blocking_call(call_and_take)
    assert json.loads(body)["status"] == "success" and props.delivery_mode == PERSISTENT
