"""Queue names, message headers, and what every transport hands over: the Message, the Transport, ConnectionLost."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

# The durable queue legacy clients declare as `durable=True` with no arguments: any argument we
# added (queue type, dead-letter exchange, ...) would make their declare fail, so there are none.
INSTRUCTION_QUEUE = "instruction_queue"
INSTRUCTION_QUEUE_ARGUMENTS: dict = {}
# Poison messages, kept for a person to look at: durable, no arguments.
DEAD_LETTER_SUFFIX = ".dead"
# Each replica's reply queue: exclusive to its connection, so no other connection can read the
# results and token streams of its Submit callers (the broker refuses them); declared again on a
# reconnect (replies published while it was down are lost with it), and expired by the broker
# once unused for this long.
REPLY_QUEUE_EXPIRES_MS = 60_000

PERSISTENT = 2
TRANSIENT = 1

# Set by us when we republish a redelivered message: how many times it was delivered and not
# finished. RabbitMQ's classic queues do not count deliveries (quorum queues' delivery-limit
# would, but the queue's type is fixed by the legacy clients' declaration).
DELIVERY_COUNT_HEADER = "x-llmchatlinker-deliveries"
MAX_DELIVERIES = 5
# A caller's key on a message (`Bearer <key>`): the front door's callers' and legacy publishers' own.
CALLER_KEY_HEADER = "authorization"
# Headers of a dead-lettered message: why, and where it came from.
FAILURE_HEADER = "x-llmchatlinker-failure"
FAILURE_REASON_HEADER = "x-llmchatlinker-failure-reason"
ORIGIN_QUEUE_HEADER = "x-llmchatlinker-origin-queue"


def dead_letter_queue_name(queue: str) -> str:
    return queue + DEAD_LETTER_SUFFIX


def reply_queue_name(queue: str, replica_id: str) -> str:
    return f"{queue}.replies.{replica_id}"


class ConnectionLost(Exception):
    """The connection a publish or ack was meant for is gone."""


class BrokerRefused(RuntimeError):
    """The broker refuses this replica's credentials or virtual host: trying again cannot help."""


@dataclasses.dataclass
class Message:
    """One queue message as the cycle sees it, whatever carried it (RabbitMQ or in-process)."""

    body: bytes
    content_type: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    message_id: str | None = None
    headers: dict = dataclasses.field(default_factory=dict)
    # True when the broker handed it out before and it was never acknowledged.
    redelivered: bool = False
    # The transport's handle for ack/nack (for RabbitMQ: connection generation and delivery tag).
    tag: object = None

    @property
    def deliveries(self) -> int:
        count = self.headers.get(DELIVERY_COUNT_HEADER, 0)
        return count if isinstance(count, int) else 0


OnMessage = Callable[[Message], None]


class Transport(Protocol):
    """What the cycle and the front door need from a queue: RabbitMQ (amqp.py) or inprocess.py."""

    queue: str
    reply_queue: str
    # Whether this replica takes instructions right now.
    consuming: bool
    # Whether it takes them or stands by for the replica that does (health: NOT_SERVING while
    # neither, as when the broker is gone).
    attached: bool
    # Whether a connection is open (with its reply queue declared).
    connected: bool
    # Broker connections lost so far; with each went the exclusive reply queue and any reply
    # published to it meanwhile.
    connections_lost: int

    def start(self, on_instruction: OnMessage, on_reply: OnMessage) -> None:
        """Starts consuming; callbacks run on the event loop."""

    async def ready(self, timeout: float) -> None:
        """Waits until the transport can publish; raises TimeoutError otherwise."""

    async def publish(self, routing_key: str, message: Message, *, persistent: bool = True,
                      confirm: bool = True) -> None:
        """Publishes; with confirm, returns once the broker has taken responsibility for it."""

    def publish_nowait(self, routing_key: str, message: Message, *, persistent: bool = False) -> None:
        """Publishes without waiting or confirming, in order with other publishes; dropped when
        there is no connection (for progress events, which are best effort)."""

    def ack(self, message: Message) -> None:
        """Acknowledges; a message whose connection died meanwhile is left for redelivery."""

    def requeue(self, message: Message) -> None:
        """Gives a message back for redelivery."""

    async def stop_consuming(self) -> None:
        """Takes no new instructions; replies still arrive."""

    async def close(self) -> None:
        """Closes the connection."""
