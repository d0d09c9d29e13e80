"""What the orchestrator publishes about a message it took: the reply to its caller, its dead letter, its republished copy."""

from __future__ import annotations

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.orchestrator.queue.bodies import encode_result, without_provider_keys
from services.orchestrator.queue.transport import (
    CALLER_KEY_HEADER, DELIVERY_COUNT_HEADER, FAILURE_HEADER, FAILURE_REASON_HEADER, ORIGIN_QUEUE_HEADER, Message,
    Transport, dead_letter_queue_name, reply_queue_name,
)

# Reply queues that never outlive a broker restart: the ones the broker names (a queue declared
# with an empty name, as the original client's exclusive reply queue) and direct reply-to (no
# queue at all). The replicas' own reply queues (reply_queue_name) are not durable either.
SERVER_NAMED_PREFIX = "amq.gen-"
DIRECT_REPLY_TO_PREFIX = "amq.rabbitmq.reply-to"


def reply_may_be_durable(reply_to: str, queue: str) -> bool:
    """Whether a reply queue may be durable, so that a persistent reply in it survives a broker
    restart: any queue its caller named, except this suite's replicas' reply queues."""
    return not reply_to.startswith((SERVER_NAMED_PREFIX, DIRECT_REPLY_TO_PREFIX, reply_queue_name(queue, "")))


class Outbox:
    """Publishes on one transport. Dead letters and republished messages are persistent and
    confirmed (each call returns once the broker has them); replies are where a durable queue
    can keep them, and otherwise transient and unconfirmed (see `reply`)."""

    def __init__(self, transport: Transport):
        self._transport = transport

    async def reply(self, request: Message, result: orchestrator_pb2.Result) -> None:
        """The result to the request's reply_to (if any), in the request's encoding, under its correlation id.

        To a reply queue that may be durable: persistent, and confirmed before the request is
        acknowledged, so the reply outlives a broker restart. To one that cannot be (server-named,
        exclusive, direct reply-to): persistence would keep nothing, since the queue goes with its
        caller's connection or the broker, and the confirm is not needed to acknowledge safely:
        the reply and the ack travel in order on one channel, so an ack the broker took follows a
        reply it took, and a lost connection loses the ack too (the request is delivered again).
        """
        if not request.reply_to:
            return
        body, content_type = encode_result(request.content_type, result)
        durable = reply_may_be_durable(request.reply_to, self._transport.queue)
        await self._transport.publish(request.reply_to, Message(
            body=body,
            content_type=content_type,
            correlation_id=request.correlation_id,
            message_id=f"{result.instruction_id}/{result.sequence}",
        ), persistent=durable, confirm=durable)

    async def dead_letter(self, message: Message, failure: str, reason: str) -> None:
        """Keeps the message, with why it failed and where it came from, on the dead-letter queue:
        as it came, but without its caller's key nor any provider API key in it (blanked out):
        nobody reading that queue should get them."""
        kept = _copy(message, {
            FAILURE_HEADER: failure,
            FAILURE_REASON_HEADER: reason,
            ORIGIN_QUEUE_HEADER: self._transport.queue,
        })
        kept.headers.pop(CALLER_KEY_HEADER, None)
        kept.body = without_provider_keys(message.body, message.content_type)
        await self._transport.publish(dead_letter_queue_name(self._transport.queue), kept)

    async def republish(self, message: Message, deliveries: int) -> None:
        """Puts a message that was delivered and never finished back on the queue, counting it."""
        await self._transport.publish(self._transport.queue, _copy(message, {DELIVERY_COUNT_HEADER: deliveries}))


def _copy(message: Message, extra_headers: dict) -> Message:
    return Message(
        body=message.body,
        content_type=message.content_type,
        reply_to=message.reply_to,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        headers={**message.headers, **extra_headers},
    )
