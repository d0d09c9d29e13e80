"""An unmodified-style legacy client: JSON to the instruction queue, the reply on its own queue."""

from __future__ import annotations

import json
import time
import uuid

import pika

REPLY_TIMEOUT_S = 60.0


class LegacyClient:
    """One persistent connection and one exclusive reply queue, as the original client kept."""

    def __init__(self, amqp_url: str, queue: str) -> None:
        self._queue = queue
        self._connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self._channel = self._connection.channel()
        # What existing clients do: durable, no arguments.
        self._channel.queue_declare(queue=queue, durable=True)
        self._reply_queue = self._channel.queue_declare(queue="", exclusive=True).method.queue
        self._channel.basic_consume(self._reply_queue, self._on_reply, auto_ack=True)
        self._waiting: str | None = None
        self._reply: bytes | None = None

    def _on_reply(self, _channel, _method, properties, body: bytes) -> None:
        if properties.correlation_id == self._waiting:
            self._reply = body

    def call(self, kind: str, data: dict) -> dict:
        self._waiting, self._reply = str(uuid.uuid4()), None
        self._channel.basic_publish(
            exchange="", routing_key=self._queue, body=json.dumps({"type": kind, "data": data}),
            properties=pika.BasicProperties(reply_to=self._reply_queue, correlation_id=self._waiting,
                                            delivery_mode=2))
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while self._reply is None:
            # Returns as soon as the reply (or anything else) has been dispatched.
            self._connection.process_data_events(time_limit=1)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply to {kind} after {REPLY_TIMEOUT_S:.0f} s")
        return json.loads(self._reply)

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()
