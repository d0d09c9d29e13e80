"""Execute stage: the Control Unit runs each of the 26 instructions as deadline-bound gRPC calls on the units.

Lists: an instruction that asks for page_size 0 and no page_token (every legacy JSON list) gets
the whole list, followed page by page up to 10,000 items, with next_page_token set when more
remain; page_size > 0 or a page_token gets exactly one page. CHAT_LOAD does the same with its
messages. Mutating calls carry the request id "{instruction_id}:{step}", so executing an
instruction again (a redelivery) never applies an effect twice.
"""

import logging

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import instruction_type_of
from services.common.errors import DomainError, InvalidArgument, error_info
from services.orchestrator import control_chats, control_generate, control_llm, control_users
from services.orchestrator.channels import UnitChannels
from services.orchestrator.control_run import DOMAIN, Emit, Run
from services.orchestrator.joined import MODEL_TTL_S, JoinedCalls

log = logging.getLogger(__name__)

HANDLERS = {**control_users.HANDLERS, **control_chats.HANDLERS, **control_llm.HANDLERS, **control_generate.HANDLERS}
assert len(HANDLERS) == 26, "every instruction type has exactly one handler"

_OK = grpc.StatusCode.OK.value[0]
# Readable words for failures that come from the transport rather than a unit's own rules.
_TRANSPORT_FAILURES = {
    grpc.StatusCode.UNAVAILABLE: "a unit of the suite is unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "a unit of the suite did not answer in time",
    grpc.StatusCode.CANCELLED: "a call to a unit was cancelled",
}


class ControlUnit:
    """Executes instructions on the units; one instance serves every instruction concurrently."""

    def __init__(self, channels: UnitChannels, model_ttl_s: float = MODEL_TTL_S):
        self._channels = channels
        self._joined = JoinedCalls(channels, model_ttl_s)

    async def execute(self, instruction: orchestrator_pb2.Instruction, emit: Emit) -> orchestrator_pb2.Result:
        """Runs an instruction and returns its final Result (sequence 0: the caller numbers events).

        Progress events (token deltas) go to `emit` as non-final Results, in order, before the
        final one is returned. Errors of the instruction, including a unit's, come back in the
        final Result's status and are never raised; cancellation of the calling task propagates.
        """
        kind = instruction.WhichOneof("instruction")
        try:
            if kind is None:
                raise InvalidArgument("the instruction sets none of the 26 instruction types",
                                      reason="MALFORMED_INSTRUCTION")
            payload = await HANDLERS[kind](Run(self._channels, instruction, emit, self._joined), getattr(instruction, kind))
        except Exception as error:  # noqa: BLE001 - every failure becomes the instruction's outcome
            return failed_result(instruction.instruction_id, instruction_type_of(instruction), error)
        return orchestrator_pb2.Result(
            instruction_id=instruction.instruction_id,
            instruction_type=instruction_type_of(instruction),
            final=True,
            status=orchestrator_pb2.Status(code=_OK),
            **payload,
        )


def failed_result(instruction_id: str, instruction_type: int, error: BaseException) -> orchestrator_pb2.Result:
    """The final Result of an instruction that failed with `error` (see status_of)."""
    return orchestrator_pb2.Result(instruction_id=instruction_id, instruction_type=instruction_type, final=True,
                                   status=status_of(error))


def status_of(error: BaseException) -> orchestrator_pb2.Status:
    """The Result status of a failure.

    A unit's gRPC error keeps its code, message and ErrorInfo (reason, domain). A DomainError
    raised here (including decode.DecodeError) gets the orchestrator's domain. Anything else is
    a bug: logged, and answered INTERNAL without details.
    """
    if isinstance(error, DomainError):
        return orchestrator_pb2.Status(code=error.code.value[0], message=error.message, reason=error.reason,
                                       domain=DOMAIN)
    if isinstance(error, grpc.aio.AioRpcError):
        info = error_info(error)
        if info is not None:
            return orchestrator_pb2.Status(code=error.code().value[0], message=error.details() or "",
                                           reason=info.reason, domain=info.domain)
        # No ErrorInfo: the call failed in transport (unit down, deadline) or the unit crashed.
        summary = _TRANSPORT_FAILURES.get(error.code(), "a call to a unit failed")
        details = f": {error.details()}" if error.details() else ""
        return orchestrator_pb2.Status(code=error.code().value[0], message=summary + details,
                                       reason=f"UNIT_{error.code().name}", domain=DOMAIN)
    log.error("instruction failed unexpectedly", exc_info=error)
    return orchestrator_pb2.Status(code=grpc.StatusCode.INTERNAL.value[0],
                                   message="internal error; see the orchestrator log", reason="INTERNAL",
                                   domain=DOMAIN)
