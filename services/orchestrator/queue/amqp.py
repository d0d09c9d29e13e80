"""The RabbitMQ transport: the one class that owns the connection and channel.

pika is not thread-safe, so the connection lives on its own I/O thread (a SelectConnection and its
ioloop, as in pika's asynchronous consumer example). Deliveries cross to the asyncio loop with
`loop.call_soon_threadsafe`; acks and publishes cross back with the ioloop's
`add_callback_threadsafe`, and each checks that its channel is still the open one. Both
crossings are batched (Handoff): under load one wake-up carries many calls.

One channel publishes (with confirms) and consumes this replica's replies; a second, the intake,
consumes the instruction queue as its exclusive consumer. Only one replica at a time takes
instructions, so a chat's instructions run in the order they were queued however many replicas
run; the others stand by (their front doors still queue instructions and stream results) and try
the intake every STANDBY_RETRY_SECONDS, so one takes over within about a second when the holder
dies. The broker gives the instructions the holder had not acknowledged, in their order, to the
next.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading

import pika
import pika.spec

from services.orchestrator.queue.handoff import Handoff
from services.orchestrator.queue.transport import (
    INSTRUCTION_QUEUE_ARGUMENTS, PERSISTENT, REPLY_QUEUE_EXPIRES_MS, TRANSIENT, BrokerRefused, ConnectionLost,
    Message, OnMessage,
    dead_letter_queue_name, reply_queue_name,
)

log = logging.getLogger(__name__)
# pika reports one failed connection attempt at ERROR from four layers of its connection workflow;
# this class logs each failure once, in its own words, so those layers are quieted.
for _chatty in ("pika.adapters.utils.connection_workflow", "pika.adapters.base_connection"):
    logging.getLogger(_chatty).setLevel(logging.CRITICAL)

# Reconnect back-off: doubles from FIRST to CAP seconds, each wait drawn from its upper half.
BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 30.0
# How long a publish waits for a connection, and for the broker's confirm.
PUBLISH_TIMEOUT_SECONDS = 30.0
# How often a standing-by replica tries to become the instruction queue's consumer.
STANDBY_RETRY_SECONDS = 1.0
# The broker's answer to a second exclusive consumer of a queue.
ACCESS_REFUSED = 403


class Backoff:
    """Exponential back-off with a cap and jitter."""

    def __init__(self, first: float = BACKOFF_FIRST_SECONDS, cap: float = BACKOFF_CAP_SECONDS):
        self.first, self.cap, self.failures = first, cap, 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.first * 2**self.failures)
        self.failures = min(self.failures + 1, 32)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class AmqpQueue:
    """Consumes the instruction queue and this replica's reply queue; publishes with confirms."""

    def __init__(self, url: str, queue: str, prefetch: int, replica_id: str):
        self.queue = queue
        self.reply_queue = reply_queue_name(queue, replica_id)
        self.dead_letter_queue = dead_letter_queue_name(queue)
        self._parameters = pika.URLParameters(url)
        self._parameters.client_properties = {"connection_name": f"llmchatlinker-orchestrator-{replica_id}"}
        self._prefetch = prefetch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_instruction: OnMessage | None = None
        self._on_reply: OnMessage | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._backoff = Backoff()
        self._to_loop: Handoff | None = None
        self._to_io = Handoff(lambda _run: None)  # wired to each connection's ioloop in _run
        # Written on the I/O thread only.
        self._connection: pika.SelectConnection | None = None
        self._channel = None
        self._generation = 0
        self._consume_instructions = True
        self._consumer_tag: str | None = None
        self._intake = None  # the channel consuming the instruction queue
        self._intake_epoch = 0  # counts intake channels: a delivery tag is only good on its own
        # Written on the I/O thread, read by the health check: plain flags are enough.
        self.consuming = False  # taking instructions
        self.standing_by = False  # attached, while another replica takes them
        self._publish_seq = 0
        self._confirms: dict[int, asyncio.Future] = {}
        # Owned by the event loop.
        self._ready = asyncio.Event()
        # Set when the broker refused us for good (credentials, vhost); ready() then raises it.
        self._refused = asyncio.Event()
        self._refusal: BrokerRefused | None = None
        self._unconfirmed: dict[asyncio.Future, int] = {}
        # Connections lost so far: each took the (exclusive) reply queue, and the replies sent to
        # it meanwhile, with it.
        self.connections_lost = 0

    # ---- the event loop's side -------------------------------------------------------------

    def start(self, on_instruction: OnMessage, on_reply: OnMessage) -> None:
        self._loop = asyncio.get_running_loop()
        self._to_loop = Handoff(self._loop.call_soon_threadsafe)
        self._on_instruction, self._on_reply = on_instruction, on_reply
        self._thread = threading.Thread(target=self._run, name="amqp-io", daemon=True)
        self._thread.start()

    async def ready(self, timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        """Waits until consuming, or standing by for the replica that consumes; asyncio.TimeoutError after `timeout`, BrokerRefused when refused for good."""
        waits = [asyncio.ensure_future(self._ready.wait()), asyncio.ensure_future(self._refused.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self._refusal is not None:
            raise self._refusal
        if not done:
            raise asyncio.TimeoutError

    def _refuse(self, refusal: BrokerRefused) -> None:
        self._refusal = refusal
        self._refused.set()

    async def publish(self, routing_key: str, message: Message, *, persistent: bool = True,
                      confirm: bool = True) -> None:
        if not self._ready.is_set():
            try:
                await self.ready()
            except asyncio.TimeoutError:
                raise ConnectionLost("no connection to RabbitMQ") from None
        future = self._loop.create_future()
        generation = self._generation
        if confirm:
            self._unconfirmed[future] = generation
            if not self._ready.is_set():
                _fail(future, ConnectionLost("connection lost"))  # _connection_lost already ran
        self._threadsafe(functools.partial(
            self._publish, generation, routing_key, _properties(message, persistent), message.body,
            future if confirm else None))
        if confirm:
            try:
                await asyncio.wait_for(future, PUBLISH_TIMEOUT_SECONDS)
            except asyncio.TimeoutError:
                raise ConnectionLost("no confirm from the broker in time") from None
            finally:
                self._unconfirmed.pop(future, None)

    def publish_nowait(self, routing_key: str, message: Message, *, persistent: bool = False) -> None:
        """Best effort, in order with every other publish: dropped while disconnected."""
        if self._ready.is_set():
            self._threadsafe(functools.partial(
                self._publish, self._generation, routing_key, _properties(message, persistent), message.body, None))

    @property
    def connected(self) -> bool:
        """Whether a connection is open and its reply queue declared (publishing works)."""
        return self._ready.is_set()

    @property
    def attached(self) -> bool:
        """Taking instructions, or standing by for the replica that takes them: healthy either way."""
        return self.consuming or self.standing_by

    def ack(self, message: Message) -> None:
        epoch, delivery_tag = message.tag
        self._threadsafe(functools.partial(self._settle, epoch, delivery_tag, requeue=None))

    def requeue(self, message: Message) -> None:
        epoch, delivery_tag = message.tag
        self._threadsafe(functools.partial(self._settle, epoch, delivery_tag, requeue=True))

    async def stop_consuming(self) -> None:
        """Cancels the instruction consumer; prefetched deliveries already handed over still finish."""
        done = self._loop.create_future()
        self._threadsafe(functools.partial(self._cancel_consumer, done))
        try:
            await asyncio.wait_for(done, 5)
        except (asyncio.TimeoutError, ConnectionLost):
            pass  # no connection: nothing is being consumed

    async def close(self) -> None:
        self._stopping.set()
        self._threadsafe(self._close_connection)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    def _threadsafe(self, callback) -> None:
        """Runs `callback` on the I/O thread (the connection's thread-safe callback, batched)."""
        self._to_io.call(callback)

    def _connection_lost(self, generation: int) -> None:
        self._ready.clear()
        self.connections_lost += 1
        for future, published_on in list(self._unconfirmed.items()):
            if published_on <= generation:
                _fail(future, ConnectionLost("connection lost before the broker confirmed"))

    # ---- the I/O thread's side -------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            connection = pika.SelectConnection(
                self._parameters,
                on_open_callback=self._on_connection_open,
                on_open_error_callback=self._on_connection_open_error,
                on_close_callback=self._on_connection_closed,
            )
            self._connection = connection
            self._to_io.rewire(connection.ioloop.add_callback_threadsafe)
            connection.ioloop.start()
            if self._stopping.is_set():
                break
            delay = self._backoff.next_delay()
            log.warning("RabbitMQ connection lost; reconnecting in %.1f s", delay)
            self._stopping.wait(delay)
        self._connection = None

    def _on_connection_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_connection_open_error(self, connection, error) -> None:
        if isinstance(error, (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError,
                              pika.exceptions.AuthenticationError)):
            # Wrong user, password or vhost: reconnecting would only repeat the refusal.
            what = "virtual host" if isinstance(error, pika.exceptions.ProbableAccessDeniedError) else "credentials"
            self._stopping.set()
            self._to_loop.call(self._refuse, BrokerRefused(
                f"RabbitMQ at {self._parameters.host}:{self._parameters.port} refuses the {what} of "
                f"LLMCHATLINKER_AMQP_URL (user {self._parameters.credentials.username!r}, virtual host "
                f"{self._parameters.virtual_host!r})"))
        else:
            log.warning("cannot connect to RabbitMQ: %s", error)
        connection.ioloop.stop()

    def _on_connection_closed(self, connection, reason) -> None:
        self.consuming = self.standing_by = False
        self._channel = self._intake = None
        self._to_loop.call(self._connection_lost, self._generation)
        self._confirms.clear()
        if not self._stopping.is_set():
            log.warning("RabbitMQ connection closed: %s", reason)
        connection.ioloop.stop()

    def _on_channel_open(self, channel) -> None:
        self._generation += 1
        self._channel = channel
        self._publish_seq = 0
        self._confirms = {}
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _frame: self._declare(channel))

    def _on_consumer_cancelled(self, _frame) -> None:
        # The broker cancelled our consumer (the queue was deleted, say): start again, which
        # declares the queue and consumes anew; health says NOT_SERVING meanwhile.
        self.consuming = self.standing_by = False
        log.warning("RabbitMQ cancelled the consumer of %s; reconnecting", self.queue)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _on_channel_closed(self, channel, reason) -> None:
        self.consuming = self.standing_by = False
        # A channel error (say, a queue declared elsewhere with other arguments) leaves the
        # connection useless to us: close it and start again after the back-off.
        if not self._stopping.is_set():
            log.warning("RabbitMQ channel closed: %s", reason)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _declare(self, channel) -> None:
        def declared(_frame, step=0):
            steps = [
                lambda cb: channel.queue_declare(self.dead_letter_queue, durable=True, callback=cb),
                lambda cb: channel.queue_declare(
                    self.reply_queue, durable=False, exclusive=True, auto_delete=False,
                    arguments={"x-expires": REPLY_QUEUE_EXPIRES_MS}, callback=cb),
            ]
            if step < len(steps):
                steps[step](functools.partial(declared, step=step + 1))
            else:
                self._consume(channel)

        channel.queue_declare(self.queue, durable=True, arguments=INSTRUCTION_QUEUE_ARGUMENTS or None,
                              callback=declared)

    def _consume(self, channel) -> None:
        channel.basic_consume(self.reply_queue, self._on_reply_delivery, auto_ack=True)
        self._backoff.reset()
        if self._consume_instructions:
            self._open_intake()  # ready once it consumes or stands by
        else:
            self._to_loop.call(self._ready.set)

    # The intake: the instruction queue's one consumer, or standing by for it.

    def _open_intake(self) -> None:
        connection = self._connection
        if self._consume_instructions and self._channel is not None and connection is not None and connection.is_open:
            connection.channel(on_open_callback=self._on_intake_open)

    def _on_intake_open(self, channel) -> None:
        if not self._consume_instructions or self._channel is None:
            channel.close()
            return
        self._intake_epoch += 1
        self._intake = channel
        epoch = self._intake_epoch
        channel.add_on_close_callback(self._on_intake_closed)
        channel.add_on_cancel_callback(self._on_consumer_cancelled)

        def consumed(_frame) -> None:
            if self._intake is channel:
                was_standing_by, self.standing_by, self.consuming = self.standing_by, False, True
                self._to_loop.call(self._ready.set)
                log.info("consuming %s (prefetch %d)%s, replies on %s", self.queue, self._prefetch,
                         ", taken over from the replica that held it" if was_standing_by else "", self.reply_queue)

        def qos_set(_frame) -> None:
            self._consumer_tag = channel.basic_consume(
                self.queue, functools.partial(self._on_instruction_delivery, epoch), auto_ack=False, exclusive=True,
                callback=consumed)

        channel.basic_qos(prefetch_count=self._prefetch, callback=qos_set)

    def _on_intake_closed(self, channel, reason) -> None:
        if self._intake is channel:
            self._intake = None
        self.consuming = False
        connection = self._connection
        if self._stopping.is_set() or not self._consume_instructions or connection is None or not connection.is_open:
            return
        if getattr(reason, "reply_code", None) == ACCESS_REFUSED:
            # Another replica is the queue's consumer: stand by and try again shortly.
            if not self.standing_by:
                log.info("another orchestrator takes the instructions of %s; standing by", self.queue)
            self.standing_by = True
            self._to_loop.call(self._ready.set)
            connection.ioloop.call_later(STANDBY_RETRY_SECONDS, self._open_intake)
            return
        self.standing_by = False
        log.warning("RabbitMQ closed the intake channel: %s", reason)
        connection.close()  # start again after the back-off, as for the other channel

    def _message(self, method, properties, body: bytes) -> Message:
        return Message(
            body=body,
            content_type=properties.content_type,
            reply_to=properties.reply_to,
            correlation_id=properties.correlation_id,
            message_id=properties.message_id,
            headers=dict(properties.headers or {}),
            redelivered=bool(method.redelivered),
            tag=(self._generation, method.delivery_tag),
        )

    def _on_instruction_delivery(self, epoch, _channel, method, properties, body) -> None:
        message = self._message(method, properties, body)
        message.tag = (epoch, method.delivery_tag)
        self._to_loop.call(self._on_instruction, message)

    def _on_reply_delivery(self, _channel, method, properties, body) -> None:
        self._to_loop.call(self._on_reply, self._message(method, properties, body))

    def _publish(self, generation, routing_key, properties, body, future) -> None:
        channel = self._channel
        if generation != self._generation or channel is None or not channel.is_open:
            if future is not None:
                self._to_loop.call(_fail, future, ConnectionLost("connection changed"))
            return
        try:
            channel.basic_publish("", routing_key, body, properties)
        except Exception as error:  # noqa: BLE001 - a message pika cannot encode: its publisher hears why
            if future is not None:
                self._to_loop.call(_fail, future, error)
            log.warning("cannot publish to %s: %s", routing_key, error)
            return
        self._publish_seq += 1
        if future is not None:
            self._confirms[self._publish_seq] = future

    def _on_confirm(self, frame) -> None:
        method = frame.method
        refused = isinstance(method, pika.spec.Basic.Nack)
        tags = [t for t in self._confirms if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            future = self._confirms.pop(tag, None)
            if future is None:
                continue
            if refused:
                self._to_loop.call(_fail, future, ConnectionLost("the broker refused the message"))
            else:
                self._to_loop.call(_succeed, future)

    def _settle(self, epoch: int, delivery_tag: int, requeue: bool | None) -> None:
        channel = self._intake
        if epoch != self._intake_epoch or channel is None or not channel.is_open:
            return  # the tag died with its channel: the broker redelivers the message
        if requeue is None:
            channel.basic_ack(delivery_tag)
        else:
            channel.basic_nack(delivery_tag, requeue=requeue)

    def _cancel_consumer(self, done: asyncio.Future) -> None:
        self._consume_instructions = False
        self.consuming = self.standing_by = False
        channel, tag = self._intake, self._consumer_tag
        self._consumer_tag = None
        if channel is None or not channel.is_open or tag is None:
            self._to_loop.call(_succeed, done)
            return
        channel.basic_cancel(tag, callback=lambda _frame: self._to_loop.call(_succeed, done))

    def _close_connection(self) -> None:
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()
        elif connection is not None and not connection.is_closing:
            connection.ioloop.stop()


def _properties(message: Message, persistent: bool) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=message.content_type,
        delivery_mode=PERSISTENT if persistent else TRANSIENT,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        reply_to=message.reply_to,
        headers=message.headers or None,
    )


def _succeed(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
