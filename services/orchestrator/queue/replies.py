"""What the orchestrator publishes about a message it took: the reply to its caller, its dead letter, its republished copy."""

from __future__ import annotations

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.orchestrator.queue.bodies import encode_result
from services.orchestrator.queue.transport import (
    CALLER_KEY_HEADER, DELIVERY_COUNT_HEADER, FAILURE_HEADER, FAILURE_REASON_HEADER, ORIGIN_QUEUE_HEADER, Message, Transport,
    dead_letter_queue_name,
)


class Outbox:
    """Publishes on one transport, persistent and confirmed: each call returns once the broker has the message."""

    def __init__(self, transport: Transport):
        self._transport = transport

    async def reply(self, request: Message, result: orchestrator_pb2.Result) -> None:
        """The result to the request's reply_to (if any), in the request's encoding, under its correlation id."""
        if not request.reply_to:
            return
        body, content_type = encode_result(request.content_type, result)
        await self._transport.publish(request.reply_to, Message(
            body=body,
            content_type=content_type,
            correlation_id=request.correlation_id,
            message_id=f"{result.instruction_id}/{result.sequence}",
        ))

    async def dead_letter(self, message: Message, failure: str, reason: str) -> None:
        """Keeps the raw message, with why it failed and where it came from, on the dead-letter
        queue; without its caller's key, which nobody reading that queue should get."""
        kept = _copy(message, {})
        kept.headers.pop(CALLER_KEY_HEADER, None)
        await self._transport.publish(dead_letter_queue_name(self._transport.queue), _copy(kept, {
            FAILURE_HEADER: failure,
            FAILURE_REASON_HEADER: reason,
            ORIGIN_QUEUE_HEADER: self._transport.queue,
        }))

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
