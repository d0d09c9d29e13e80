"""The legacy AMQP transport: JSON to instruction_queue, the reply awaited on reply_to."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import grpc

from llmchatlinker.client.errors import LLMChatLinkerError
from llmchatlinker.client.replies import Reply
from llmchatlinker.client.settings import AMQP_INSTALL_HINT, key_metadata

# How long one wait on the socket lasts; the overall wait is the transport's timeout.
POLL_SECONDS = 1.0


def connection_parameters(url: str | None):
    """From a URL, else from the original client's RABBITMQ_HOST/PORT/USER/PASSWORD."""
    import pika

    if url:
        return pika.URLParameters(url)
    credentials = pika.PlainCredentials(os.environ.get("RABBITMQ_USER", "guest"),
                                        os.environ.get("RABBITMQ_PASSWORD", "guest"))
    return pika.ConnectionParameters(host=os.environ.get("RABBITMQ_HOST", "localhost"),
                                     port=int(os.environ.get("RABBITMQ_PORT", "5672")),
                                     credentials=credentials)


class AmqpTransport:
    """Owns one broker connection and channel for all of a client's calls (the original opened one
    per call). Publishes with confirms and persistent delivery; one call at a time per client."""

    def __init__(self, url: str | None, queue: str, timeout: float, api_key: str | None = None) -> None:
        try:
            import pika  # noqa: F401
        except ImportError:
            raise ImportError(f"the AMQP transport needs pika: {AMQP_INSTALL_HINT}") from None
        self.queue = queue
        self.timeout = timeout
        # Sent as the message's `authorization` header: the suite then acts with the key's role.
        self._headers = dict(key_metadata(api_key)) or None
        self._parameters = connection_parameters(url)
        self._lock = threading.Lock()
        self._connection = None
        self._channel = None
        self._reply_queue = ""
        self._replies: dict[str, bytes] = {}

    def call(self, body: dict) -> Reply:
        """Publishes one legacy instruction and returns its legacy reply."""
        import pika.exceptions

        message_id = uuid.uuid4().hex
        with self._lock:
            for attempt in (1, 2):
                try:
                    correlation_id = self._publish(body, message_id)
                    return Reply(json.loads(self._wait_for(correlation_id)))
                except pika.exceptions.AMQPError as error:
                    # A connection the broker dropped while idle (missed heartbeats) is reopened
                    # once. Publishing again is safe: the same message_id is never applied twice.
                    self._drop_connection()
                    if attempt == 2:
                        raise LLMChatLinkerError(grpc.StatusCode.UNAVAILABLE,
                                                 f"RabbitMQ: {error!r}") from None
        raise AssertionError("unreachable")

    def stream(self, body: dict):
        # The legacy format has no progress events: the whole reply comes at once.
        yield self.call(body)

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def _connect(self) -> None:
        import pika

        self._connection = pika.BlockingConnection(self._parameters)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        # Declared exactly as the original client and the orchestrator do: durable, no arguments.
        self._channel.queue_declare(queue=self.queue, durable=True)
        self._reply_queue = self._channel.queue_declare(queue="", exclusive=True).method.queue
        self._channel.basic_consume(queue=self._reply_queue, on_message_callback=self._on_reply, auto_ack=True)

    def _publish(self, body: dict, message_id: str) -> str:
        import pika

        if self._connection is None or not self._connection.is_open:
            self._connect()
        correlation_id = str(uuid.uuid4())
        self._channel.basic_publish(
            exchange="",
            routing_key=self.queue,
            body=json.dumps(body).encode("utf-8"),
            properties=pika.BasicProperties(reply_to=self._reply_queue, correlation_id=correlation_id,
                                            message_id=message_id, delivery_mode=2, headers=self._headers),
        )
        return correlation_id

    def _wait_for(self, correlation_id: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        while correlation_id not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LLMChatLinkerError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                         f"no reply on the AMQP reply queue within {self.timeout:g} s")
            self._connection.process_data_events(time_limit=min(remaining, POLL_SECONDS))
        reply = self._replies.pop(correlation_id)
        self._replies.clear()  # late replies to calls that timed out earlier
        return reply

    def _on_reply(self, _channel, _method, properties, body: bytes) -> None:
        self._replies[properties.correlation_id] = body

    def _drop_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._replies.clear()
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # closing a broken connection may fail; it is gone either way
                pass
