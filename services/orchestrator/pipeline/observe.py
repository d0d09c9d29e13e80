"""What an operator sees of each instruction: its metrics, its trace span and its one log line.

The cycle wraps each message's work in `observed()` and reports the final result it answers with
through `answered()`; nothing else of the pipeline knows about telemetry. Per instruction that is
a few counter and gauge updates, one histogram observation and one log line at INFO; the span
costs nothing while tracing is off.

The log line carries the instruction's id, type, caller role, status, duration and trace id, and
never its body: no user input, model output or key reaches it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from collections.abc import Awaitable, Callable

import grpc
from prometheus_client import Counter, Gauge, Histogram

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire.names import json_type_of
from services.common import tracing
from services.orchestrator.pipeline.redelivery import InstructionOutage, is_outage
from services.orchestrator.queue.transport import ConnectionLost, Message

log = logging.getLogger("llmchatlinker.instruction")

# Seconds, from a cached read to the longest instruction (its calls' deadlines add up to 190 s).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 190)
# An outcome of a run that is not the instruction's answer: it runs again.
WAITING = "WAITING"  # went back on the queue to wait out an outage
CYCLE_FAILED = "CYCLE_FAILED"  # the cycle itself failed: republished and counted as a delivery
WITHDRAWN = "WITHDRAWN"  # its Submit caller left before it ran
NO_ROLE = "none"

INSTRUCTIONS = Counter("llmchatlinker_instructions", "Instructions finished, by type and final status (a gRPC "
                       "status code name, or WITHDRAWN).", ("type", "status"))
IN_FLIGHT = Gauge("llmchatlinker_instructions_in_flight", "Instructions this orchestrator is running now.")
DURATION = Histogram("llmchatlinker_instruction_duration_seconds", "Time from the start of an instruction's "
                     "run to its final result, by type.", ("type",), buckets=DURATION_BUCKETS)
REDELIVERIES = Counter("llmchatlinker_redeliveries", "Messages the broker delivered again (never acknowledged "
                       "before).")
OUTAGE_WAITS = Counter("llmchatlinker_outage_waits", "Runs that ended by going back on the queue to wait out an "
                       "outage, by what was out of reach.", ("reason",))
OLDEST_AGE = Gauge("llmchatlinker_oldest_instruction_age_seconds", "Age of the oldest instruction this "
                   "orchestrator has taken from the queue and not finished (waiting behind its chat or running).")

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_result_status: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("llmchatlinker_status", default=None)
# The role of the message's caller once the cycle has admitted it (caller_known).
_caller_role: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("llmchatlinker_role", default=None)


class _Held:
    """An instruction taken from the queue and not finished: when it was taken."""

    __slots__ = ("since", "__weakref__")

    def __init__(self) -> None:
        self.since = time.monotonic()


# Dropped when finished, or with the task when it never ran (cancelled while it waited its turn).
_held: weakref.WeakSet[_Held] = weakref.WeakSet()


def _oldest_age() -> float:
    now = time.monotonic()
    return now - min((held.since for held in list(_held)), default=now)


OLDEST_AGE.set_function(_oldest_age)


def caller_known(role: str) -> None:
    """The cycle has admitted the instruction's caller, who has `role`: for its log line."""
    roles = _caller_role.get()
    if roles is not None:
        roles.append(role)


def observed(message: Message, instruction: orchestrator_pb2.Instruction,
             run: Callable[[Message, orchestrator_pb2.Instruction], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """The message's work, `run(message, instruction)`, counted, timed, traced and logged. Call it
    when the message is fetched (its wait behind its chat counts towards the oldest age)."""
    held = _Held()
    _held.add(held)

    async def work() -> None:
        kind = json_type_of(instruction) or "UNSPECIFIED"
        status: list[str] = []
        token = _result_status.set(status)
        roles: list[str] = []
        role_token = _caller_role.set(roles)
        IN_FLIGHT.inc()
        if message.redelivered:
            REDELIVERIES.inc()
        began = time.perf_counter()
        outcome, reason = WITHDRAWN, ""
        parent = _trace_headers(message.headers) if tracing.enabled() else None
        with tracing.span(f"process {kind}", tracing.SpanKind.CONSUMER, parent,
                          {"llmchatlinker.instruction.type": kind, "messaging.system": "rabbitmq"}) as span:
            try:
                await run(message, instruction)
                outcome = status[-1] if status else WITHDRAWN
            except asyncio.CancelledError:
                outcome = ""  # shutting down: it is delivered again, and seen then
                raise
            except Exception as error:
                outcome, reason = (WAITING, _outage_reason(error)) if is_outage(error) else (CYCLE_FAILED, "")
                raise
            finally:
                _held.discard(held)
                IN_FLIGHT.dec()
                _result_status.reset(token)
                _caller_role.reset(role_token)
                if outcome:
                    _finished(instruction, kind, roles[-1] if roles else NO_ROLE, outcome, reason,
                              time.perf_counter() - began, span)

    return work


def answered(result: orchestrator_pb2.Result) -> None:
    """The cycle is answering its message with `result` (a final one): that is its status."""
    status = _result_status.get()
    if status is not None:
        status.append(_CODE_NAMES.get(result.status.code, str(result.status.code)))


def _finished(instruction: orchestrator_pb2.Instruction, kind: str, role: str, outcome: str, reason: str,
              seconds: float, span) -> None:
    if outcome == WAITING:
        OUTAGE_WAITS.labels(reason).inc()
    elif outcome != CYCLE_FAILED:
        INSTRUCTIONS.labels(kind, outcome).inc()
        DURATION.labels(kind).observe(seconds)
    if span is not None and outcome not in ("OK", WITHDRAWN):
        span.set_status(tracing.trace.Status(tracing.trace.StatusCode.ERROR, outcome))
    fields = {
        "instruction_id": instruction.instruction_id,
        "instruction_type": kind,
        "role": role,
        "status": outcome + (f" ({reason})" if reason else ""),
        "duration_ms": round(seconds * 1000, 1),
        "trace_id": tracing.trace_id(),
    }
    log.info("instruction %(instruction_id)s %(instruction_type)s role=%(role)s status=%(status)s "
             "%(duration_ms).1f ms trace=%(trace_id)s", fields, extra=fields)


def _trace_headers(headers: dict) -> dict[str, str]:
    """traceparent and tracestate from a message's headers (AMQP may hand them over as bytes)."""
    found = {}
    for name in ("traceparent", "tracestate"):
        value = headers.get(name)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if isinstance(value, str):
            found[name] = value
    return found


def _outage_reason(error: Exception) -> str:
    """What was out of reach, from a bounded set: a status reason, a status code name, or the broker."""
    if isinstance(error, InstructionOutage):
        return error.result.status.reason or _CODE_NAMES.get(error.result.status.code, "UNAVAILABLE")
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code().name
    if isinstance(error, ConnectionLost):
        return "QUEUE_UNAVAILABLE"
    return type(error).__name__
