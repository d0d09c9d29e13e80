"""How many messages wait on the instruction queue and its dead-letter queue: gauges polled every few seconds.

On RabbitMQ a passive queue_declare answers with the queue's ready message count (unacknowledged
ones are not in it). The poll runs on a small connection and thread of its own, never on the
transport's I/O thread nor once per instruction, and only while the orchestrator serves metrics.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import pika
import pika.exceptions
from prometheus_client import Gauge

from services.orchestrator.queue.transport import dead_letter_queue_name

log = logging.getLogger(__name__)

POLL_EVERY_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5.0

QUEUE_DEPTH = Gauge("llmchatlinker_queue_depth", "Instructions waiting on the instruction queue (ready, not "
                    "yet taken by an orchestrator); -1 while the broker cannot be asked.")
DEAD_LETTERS = Gauge("llmchatlinker_dead_letters", "Messages on the dead-letter queue, waiting for a person "
                     "to look at them; -1 while the broker cannot be asked.")


def connect(url: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> pika.BlockingConnection:
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = parameters.blocked_connection_timeout = timeout
    parameters.connection_attempts, parameters.retry_delay = 1, 0
    parameters.client_properties = {"connection_name": "llmchatlinker-queue-depth"}
    return pika.BlockingConnection(parameters)


def message_counts(connection: pika.BlockingConnection, queue: str) -> tuple[int, int]:
    """(instruction queue, dead-letter queue) ready messages; a queue not declared yet counts 0.
    Raises pika's AMQPError when the broker cannot be asked."""
    return _count(connection, queue), _count(connection, dead_letter_queue_name(queue))


def _count(connection: pika.BlockingConnection, queue: str) -> int:
    channel = connection.channel()
    try:
        return channel.queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker:  # 404: nobody declared it yet
        return 0
    finally:
        with contextlib.suppress(Exception):
            if channel.is_open:
                channel.close()


class DepthPoller:
    """Keeps QUEUE_DEPTH and DEAD_LETTERS up to date from RabbitMQ, every POLL_EVERY_SECONDS."""

    def __init__(self, url: str, queue: str, every: float = POLL_EVERY_SECONDS):
        self._url, self._queue, self._every = url, queue, every
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-depth", daemon=True)

    def start(self) -> "DepthPoller":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        connection, failing = None, False
        while not self._stopping.is_set():
            try:
                connection = connection if connection is not None and connection.is_open else connect(self._url)
                ready, dead = message_counts(connection, self._queue)
                failing = False
            except Exception as error:  # noqa: BLE001 - the broker is gone: say so in the gauges
                ready = dead = -1
                connection = None
                if not failing:
                    log.warning("cannot read the depth of %s: %s", self._queue, type(error).__name__)
                failing = True
            QUEUE_DEPTH.set(ready)
            DEAD_LETTERS.set(dead)
            self._stopping.wait(self._every)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def watch_in_process(transport) -> None:
    """The same gauges for the in-process queue (read at scrape time)."""
    QUEUE_DEPTH.set_function(lambda: transport.queue_named(transport.queue).qsize())
    DEAD_LETTERS.set_function(lambda: transport.queue_named(transport.dead_letter_queue).qsize())
