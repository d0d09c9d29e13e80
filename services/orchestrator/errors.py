"""The orchestrator's error domain, and how a failure becomes an instruction's final Result status."""

from __future__ import annotations

import logging

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.common.errors import DomainError, error_info

log = logging.getLogger(__name__)

DOMAIN = "orchestrator.llmchatlinker.dev"

# Readable words for failures that come from the transport rather than a unit's own rules.
_TRANSPORT_FAILURES = {
    grpc.StatusCode.UNAVAILABLE: "a unit of the suite is unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "a unit of the suite did not answer in time",
    grpc.StatusCode.CANCELLED: "a call to a unit was cancelled",
}


# Reasons of failures that are outages, not answers: a unit (or its database) unreachable or stalled,
# or the provider unreachable (after llm_unit's own retries and fallbacks, or skipped while its
# breaker is open). An instruction failing with one of them before it streamed anything goes back
# on the queue and runs again, for up to LLMCHATLINKER_OUTAGE_WAIT_MS.
OUTAGE_REASONS = frozenset({"UNIT_UNAVAILABLE", "UNIT_DEADLINE_EXCEEDED", "DATABASE_UNAVAILABLE", "PROVIDER_UNREACHABLE",
                            "PROVIDER_CIRCUIT_OPEN"})
_OUTAGE_CODES = frozenset(code.value[0] for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED))


def is_outage(status: orchestrator_pb2.Status) -> bool:
    """Whether a failed instruction's status says that a part it needs is down (see OUTAGE_REASONS)."""
    return status.code in _OUTAGE_CODES and status.reason in OUTAGE_REASONS


def failed_result(instruction_id: str, instruction_type: int, status: orchestrator_pb2.Status,
                  sequence: int = 0) -> orchestrator_pb2.Result:
    """The final Result of an instruction that failed with `status`."""
    return orchestrator_pb2.Result(instruction_id=instruction_id, instruction_type=instruction_type,
                                   sequence=sequence, final=True, status=status)


def orchestrator_status(code: grpc.StatusCode, message: str, reason: str) -> orchestrator_pb2.Status:
    """A failure the orchestrator itself decides, in its own domain."""
    return orchestrator_pb2.Status(code=code.value[0], message=message, reason=reason, domain=DOMAIN)


def status_of(error: BaseException) -> orchestrator_pb2.Status:
    """The Result status of a failure.

    A unit's gRPC error keeps its code, message and ErrorInfo (reason, domain). A DomainError
    raised here (including a DecodeError) gets the orchestrator's domain. Anything else is a bug:
    logged, and answered INTERNAL without details.
    """
    if isinstance(error, DomainError):
        return orchestrator_status(error.code, error.message, error.reason)
    if isinstance(error, grpc.aio.AioRpcError):
        info = error_info(error)
        if info is not None:
            return orchestrator_pb2.Status(code=error.code().value[0], message=error.details() or "",
                                           reason=info.reason, domain=info.domain, metadata=info.metadata)
        # No ErrorInfo: the call failed in transport (unit down, deadline) or the unit crashed.
        summary = _TRANSPORT_FAILURES.get(error.code(), "a call to a unit failed")
        details = f": {error.details()}" if error.details() else ""
        return orchestrator_status(error.code(), summary + details, f"UNIT_{error.code().name}")
    log.error("instruction failed unexpectedly", exc_info=error)
    return orchestrator_status(grpc.StatusCode.INTERNAL, "internal error; see the orchestrator log", "INTERNAL")
