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

Before any of this the caller is admitted (the gate, instructions/access.py, wired in by
server.py): its key checked (UNAUTHENTICATED) and its role held against the instruction
(PERMISSION_DENIED) where no unit call is needed; the pipeline checks again, with the units, when
it runs the message. The message carries the caller's key, and the Switchboard knows the
instruction id as the caller's own (keys.scoped), so another caller's id reaches neither its
result nor its stream. A caller holds at most `max_streams` Submit calls open at once.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as orchestrator_grpc
from llmchatlinker.wire import instruction_type_of
from services.common import tracing
from services.common.errors import ResourceExhausted, Unavailable, maps_errors
from services.common.keys import scoped
from services.common.limits import PROTOBUF
from services.orchestrator.errors import DOMAIN
from services.orchestrator.queue.bodies import decode
from services.orchestrator.queue.switchboard import Switchboard
from services.orchestrator.queue.transport import ConnectionLost, Message, Transport

log = logging.getLogger(__name__)

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


# Submit calls one caller may hold open at once, unless the settings say otherwise.
DEFAULT_MAX_STREAMS = 512


async def _unit(context, call):
    """A unit call's answer; a unit's error (user_unit refusing a key, or unreachable) ends the
    RPC with the unit's own status and ErrorInfo."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        await context.abort(error.code(), error.details() or "", tuple(error.trailing_metadata() or ()))


def _authorization(context) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == "authorization":
            return value
    return None


class OrchestratorServicer(orchestrator_grpc.OrchestratorServiceServicer):
    def __init__(self, transport: Transport, switchboard: Switchboard, gate, max_streams: int = DEFAULT_MAX_STREAMS):
        self._transport = transport
        self._switchboard = switchboard
        # instructions.access.Gate (`caller`, `precheck`, `require_admin`, `keys`); server.py sets it
        # once the unit channels are open, before the server starts.
        self.gate = gate
        self._max_streams = max_streams
        # Caller scope -> its Submit calls open now.
        self._streams: dict[str, int] = {}

    @maps_errors(DOMAIN)
    async def Submit(self, request: orchestrator_pb2.SubmitRequest, context):
        authorization = _authorization(context)
        caller = await _unit(context, self.gate.caller(authorization, queued=False))
        body = request.instruction.SerializeToString()
        instruction = decode(body, PROTOBUF)  # a DecodeError is INVALID_ARGUMENT, nothing queued
        self.gate.precheck(caller, instruction)
        if self._streams.get(caller.scope, 0) >= self._max_streams:
            raise ResourceExhausted(f"this caller has {self._max_streams} Submit calls open, the most it may "
                                    "(LLMCHATLINKER_MAX_STREAMS_PER_CALLER): wait for one to end",
                                    reason="TOO_MANY_STREAMS", limit=self._max_streams)
        if not instruction.instruction_id:
            instruction.instruction_id = str(uuid.uuid4())
            body = instruction.SerializeToString()
        instruction_id = instruction.instruction_id
        ticket = scoped(caller.scope, instruction_id)
        self._streams[caller.scope] = self._streams.get(caller.scope, 0) + 1
        listener = self._switchboard.listen(ticket)
        finished = False
        try:
            try:
                await self._transport.publish(self._transport.queue, Message(
                    body=body,
                    content_type=PROTOBUF,
                    reply_to=self._transport.reply_queue,
                    correlation_id=ticket,
                    message_id=instruction_id,
                    # The caller's key (the run checks it again), and this call's trace to continue.
                    headers=tracing.inject({"authorization": authorization} if authorization else {}),
                ))
            except (ConnectionLost, TimeoutError) as error:
                finished = True  # nothing was accepted: nothing to withdraw
                raise Unavailable(f"the instruction queue is unavailable: {error}",
                                  reason="QUEUE_UNAVAILABLE") from None
            yield _accepted(instruction_id, instruction_type_of(instruction))
            sequence = 0
            while not finished:
                result = await listener.next()
                finished = result.final
                sequence += 1
                # Built in place: one copy per event (the result may be shared with other listeners).
                response = orchestrator_pb2.SubmitResponse()
                response.result.CopyFrom(result)
                # Numbered for this stream: remote deltas arrive batched, and a stored result keeps
                # the numbering of the run that stored it.
                response.result.sequence = sequence
                yield response
        finally:
            self._switchboard.forget(ticket, listener, finished)
            left = self._streams.pop(caller.scope) - 1
            if left:
                self._streams[caller.scope] = left

    @maps_errors(DOMAIN)
    async def CreateKey(self, request: orchestrator_pb2.CreateKeyRequest, context):
        self.gate.require_admin(await _unit(context, self.gate.caller(_authorization(context), queued=False)), "make keys")
        key, api_key = await _unit(context, self.gate.keys.create(request.role, request.user_id, request.name))
        return orchestrator_pb2.CreateKeyResponse(key=key, api_key=api_key)

    @maps_errors(DOMAIN)
    async def ListKeys(self, request: orchestrator_pb2.ListKeysRequest, context):
        self.gate.require_admin(await _unit(context, self.gate.caller(_authorization(context), queued=False)), "list keys")
        listed = await _unit(context, self.gate.keys.list(request.page_size, request.page_token))
        return orchestrator_pb2.ListKeysResponse(keys=listed.keys, next_page_token=listed.next_page_token)

    @maps_errors(DOMAIN)
    async def RevokeKey(self, request: orchestrator_pb2.RevokeKeyRequest, context):
        self.gate.require_admin(await _unit(context, self.gate.caller(_authorization(context), queued=False)), "revoke keys")
        await _unit(context, self.gate.keys.revoke(request.key_id))
        return orchestrator_pb2.RevokeKeyResponse()


def _accepted(instruction_id: str, instruction_type: int) -> orchestrator_pb2.SubmitResponse:
    """The stream's first event (sequence 0): the instruction is on the queue."""
    response = orchestrator_pb2.SubmitResponse()
    result = response.result
    result.instruction_id, result.instruction_type = instruction_id, instruction_type
    result.status.SetInParent()  # OK, present as on every event
    result.accepted.accept_time.GetCurrentTime()
    return response
