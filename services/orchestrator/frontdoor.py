"""The gRPC front door: OrchestratorService.Submit puts an instruction on the queue and streams its results.

The instruction goes through the same durable queue as a legacy client's, with reply_to naming
this replica's reply queue and correlation_id its instruction id. Transport only: the pipeline
runs it. A Submit call's subscription (Switchboard, keyed by instruction id) goes through:

1. LISTENING: `switchboard.listen(id)` before the publish, so no event can be missed; it also
   clears an earlier withdrawal of the same id.
2. QUEUED: published and confirmed; the stream sends the accepted event (sequence 0). A publish
   that fails ends the call UNAVAILABLE with nothing to withdraw (nothing was accepted).
3. RUNNING: the pipeline took the message. Run by this replica, its progress events reach the
   listener in-process (`switchboard.deliver`, every token delta as it arrives); run by another
   replica, they arrive batched on the reply queue (`switchboard.on_reply`). Each event is
   renumbered for this stream.
4. FINISHED: the final result arrives (from the run, or from the ledger for an id seen before);
   the stream ends and `switchboard.forget(id, finished=True)`.
5. WITHDRAWN: the caller left before the final result and no other caller listens to the id:
   `forget(id, finished=False)` cancels the run in progress here, or marks the id so that the
   pipeline of this replica, when it reaches the message, acknowledges it without running it.
   Another replica knows nothing of the withdrawal: an instruction it takes still runs there to
   the end (queued work is durable), and its reply finds no listener here.
"""

from __future__ import annotations

import logging
import uuid

from google.protobuf import timestamp_pb2

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as orchestrator_grpc
from llmchatlinker.wire import instruction_type_of
from services.common import tracing
from services.common.errors import Unavailable, maps_errors
from services.common.limits import PROTOBUF
from services.orchestrator.errors import DOMAIN
from services.orchestrator.queue.bodies import decode
from services.orchestrator.queue.switchboard import Switchboard
from services.orchestrator.queue.transport import ConnectionLost, Message, Transport

log = logging.getLogger(__name__)

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


class OrchestratorServicer(orchestrator_grpc.OrchestratorServiceServicer):
    def __init__(self, transport: Transport, switchboard: Switchboard):
        self._transport = transport
        self._switchboard = switchboard

    @maps_errors(DOMAIN)
    async def Submit(self, request: orchestrator_pb2.SubmitRequest, context):
        body = request.instruction.SerializeToString()
        instruction = decode(body, PROTOBUF)  # a DecodeError is INVALID_ARGUMENT, nothing queued
        if not instruction.instruction_id:
            instruction.instruction_id = str(uuid.uuid4())
            body = instruction.SerializeToString()
        instruction_id = instruction.instruction_id
        listener = self._switchboard.listen(instruction_id)
        finished = False
        try:
            try:
                await self._transport.publish(self._transport.queue, Message(
                    body=body,
                    content_type=PROTOBUF,
                    reply_to=self._transport.reply_queue,
                    correlation_id=instruction_id,
                    message_id=instruction_id,
                    headers=tracing.inject({}),  # the run continues this call's trace
                ))
            except (ConnectionLost, TimeoutError) as error:
                finished = True  # nothing was accepted: nothing to withdraw
                raise Unavailable(f"the instruction queue is unavailable: {error}",
                                  reason="QUEUE_UNAVAILABLE") from None
            accept_time = timestamp_pb2.Timestamp()
            accept_time.GetCurrentTime()
            yield orchestrator_pb2.SubmitResponse(result=orchestrator_pb2.Result(
                instruction_id=instruction_id,
                instruction_type=instruction_type_of(instruction),
                sequence=0,
                status=orchestrator_pb2.Status(code=0),
                accepted=orchestrator_pb2.Accepted(accept_time=accept_time),
            ))
            sequence = 0
            while not finished:
                result = await listener.get()
                finished = result.final
                sequence += 1
                event = orchestrator_pb2.Result()
                event.CopyFrom(result)
                # Numbered for this stream: remote deltas arrive batched, and a stored result keeps
                # the numbering of the run that stored it.
                event.sequence = sequence
                yield orchestrator_pb2.SubmitResponse(result=event)
        finally:
            self._switchboard.forget(instruction_id, listener, finished)
