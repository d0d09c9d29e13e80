"""Where an instruction's progress events go while it runs: to a Submit caller in this process, or
batched to a remote reply queue. Token deltas never cross the broker one message each (see floors.md).
"""

from __future__ import annotations

import asyncio

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.common.limits import PROTOBUF, is_protobuf
from services.orchestrator.queue.switchboard import Switchboard
from services.orchestrator.queue.transport import Message, Transport

Result = orchestrator_pb2.Result

# A remote caller gets at most one delta message per this long: the first delta goes at once, the
# ones that come within this long after a message go together when it is over.
DELTA_BATCH_SECONDS = 0.05


class DropDeltas:
    """Legacy JSON callers expect exactly one reply, and some callers have no reply queue."""

    def delta(self, result: Result) -> None:
        pass

    def flush(self) -> None:
        pass


class LocalDeltas:
    """The Submit caller is in this process: each delta goes straight to its stream."""

    def __init__(self, switchboard: Switchboard, instruction_id: str):
        self._switchboard, self._instruction_id = switchboard, instruction_id

    def delta(self, result: Result) -> None:
        self._switchboard.deliver(self._instruction_id, result)

    def flush(self) -> None:
        pass


class BatchedDeltas:
    """A protobuf caller elsewhere: a delta goes at once when none went in the last
    DELTA_BATCH_SECONDS, else with the others of that window when it ends; transient and
    unconfirmed (the final result is the one that must arrive)."""

    def __init__(self, transport: Transport, reply_to: str, correlation_id: str | None):
        self._transport, self._reply_to, self._correlation_id = transport, reply_to, correlation_id
        self._pending: Result | None = None
        self._window: asyncio.TimerHandle | None = None  # set while a message went out lately

    def delta(self, result: Result) -> None:
        if self._pending is None:
            self._pending = Result()
            self._pending.CopyFrom(result)
        else:
            self._pending.delta.content += result.delta.content
            self._pending.sequence = result.sequence
        if self._window is None:
            self._window_over()

    def _window_over(self) -> None:
        """Sends what waited, and opens a window if anything went."""
        self._window = None
        if self._publish():
            self._window = asyncio.get_running_loop().call_later(DELTA_BATCH_SECONDS, self._window_over)

    def flush(self) -> None:
        if self._window is not None:
            self._window.cancel()
            self._window = None
        self._publish()

    def _publish(self) -> bool:
        if self._pending is None:
            return False
        batch, self._pending = self._pending, None
        self._transport.publish_nowait(self._reply_to, Message(
            body=batch.SerializeToString(),
            content_type=PROTOBUF,
            correlation_id=self._correlation_id,
            message_id=f"{batch.instruction_id}/{batch.sequence}",
        ))
        return True


def delta_route(transport: Transport, switchboard: Switchboard, message: Message, instruction_id: str):
    """Where this message's progress events go: this replica's Submit caller, a protobuf caller's
    reply queue (batched), or nowhere (legacy JSON callers get exactly one reply)."""
    if message.reply_to == transport.reply_queue and switchboard.is_listening(instruction_id):
        return LocalDeltas(switchboard, instruction_id)
    if message.reply_to and is_protobuf(message.content_type):
        return BatchedDeltas(transport, message.reply_to, message.correlation_id)
    return DropDeltas()
