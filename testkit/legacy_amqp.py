"""A client of the original LLMChatLinker's JSON-over-AMQP protocol, as end-to-end tests drive the suite with it."""

import collections
import contextlib
import json
import time
import uuid

import pika

# How long `wait` waits for replies, by default.
REPLY_TIMEOUT_SECONDS = 60

class LegacyAmqpClient:
    """An unmodified client of the original LLMChatLinker, with pika's BlockingConnection: it declares
    the queue durable, publishes JSON with reply_to and correlation_id, and waits on its own queue."""

    def __init__(self, url: str, queue: str):
        self.queue = queue
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._connection.channel()
        self._channel.queue_declare(queue=queue, durable=True)
        self.reply_queue = self._channel.queue_declare(queue="", exclusive=True).method.queue
        self.replies: dict[str, list[dict]] = collections.defaultdict(list)
        self._channel.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)

    def _on_reply(self, _channel, _method, properties, body) -> None:
        self.replies[properties.correlation_id].append(json.loads(body))

    def send(self, json_type: str, data: dict, message_id: str | None = None, headers: dict | None = None) -> str:
        correlation_id = str(uuid.uuid4())
        body = json.dumps({"type": json_type, "data": data}).encode()
        self._channel.basic_publish("", self.queue, body, pika.BasicProperties(
            reply_to=self.reply_queue, correlation_id=correlation_id, delivery_mode=2, message_id=message_id,
            headers=headers))
        return correlation_id

    def pump(self, seconds: float) -> None:
        """Takes in the replies that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._connection.process_data_events(time_limit=left)

    def wait(self, correlation_ids, timeout: float = REPLY_TIMEOUT_SECONDS) -> None:
        """Returns once every id has at least one reply; bounded."""
        deadline = time.monotonic() + timeout
        while any(not self.replies.get(c) for c in correlation_ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply within {timeout} s")
            self._connection.process_data_events(time_limit=0.05)

    def call(self, json_type: str, data: dict) -> dict:
        correlation_id = self.send(json_type, data)
        self.wait([correlation_id])
        return self.replies[correlation_id][0]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()
