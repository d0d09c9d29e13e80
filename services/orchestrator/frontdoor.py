"""The gRPC front door: OrchestratorService.Submit puts an instruction on the queue and streams its results.

The instruction goes through the same durable queue as a legacy client's, with reply_to naming
this replica's reply queue. When this replica runs it, its events come over the Switchboard
in-process (every token delta as it arrives); when another replica runs it, they come as replies.
"""

from __future__ import annotations

import logging
import uuid

from google.protobuf import timestamp_pb2

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as orchestrator_grpc
from llmchatlinker.wire import instruction_type_of
from services.common.errors import Unavailable, maps_errors
from services.orchestrator import queues
from services.orchestrator.control_run import DOMAIN
from services.orchestrator.decode import decode
from services.orchestrator.fetch import ConnectionLost
from services.orchestrator.queues import Message
from services.orchestrator.relay import Switchboard

log = logging.getLogger(__name__)

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


class OrchestratorServicer(orchestrator_grpc.OrchestratorServiceServicer):
    def __init__(self, transport: queues.Transport, switchboard: Switchboard):
        self._transport = transport
        self._switchboard = switchboard

    @maps_errors(DOMAIN)
    async def Submit(self, request: orchestrator_pb2.SubmitRequest, context):
        body = request.instruction.SerializeToString()
        instruction = decode(body, queues.PROTOBUF)  # a DecodeError is INVALID_ARGUMENT, nothing queued
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
                    content_type=queues.PROTOBUF,
                    reply_to=self._transport.reply_queue,
                    correlation_id=instruction_id,
                    message_id=instruction_id,
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
