"""The Control Unit: runs each instruction, by its catalog row, as deadline-bound calls on the units.

Lists: an instruction that asks for page_size 0 and no page_token (every legacy JSON list) gets
the whole list, followed page by page up to 10,000 items, with next_page_token set when more
remain; page_size > 0 or a page_token gets exactly one page. CHAT_LOAD does the same with its
messages. Mutating calls carry the request id "{instruction_id}:{step}", so executing an
instruction again (a redelivery) never applies an effect twice.
"""

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import instruction_type_of
from services.common.errors import Internal, InvalidArgument
from services.common.keys import USER, Caller
from services.orchestrator.errors import failed_result, status_of
from services.orchestrator.instructions.catalog import entry_of
from services.orchestrator.instructions.run import ANYONE, DEFAULT_MAX_PAGE_BYTES, EffectsGate, Emit, Run
from services.orchestrator.units.gateways import Units

_OK = grpc.StatusCode.OK.value[0]
# The most characters of a failure's message a result carries: units quote what they refuse
# (a username, a title), and a result must not echo a caller's megabytes back (and keep them).
DEFAULT_MAX_ECHO_CHARS = 2_000


class ControlUnit:
    """Executes instructions on the units; one instance serves every instruction concurrently."""

    def __init__(self, units: Units, max_echo_chars: int = DEFAULT_MAX_ECHO_CHARS,
                 max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES):
        self._units = units
        self._max_echo_chars = max_echo_chars
        self._max_page_bytes = max_page_bytes

    async def execute(self, instruction: orchestrator_pb2.Instruction, emit: Emit,
                      caller: Caller = ANYONE, effects_gate: EffectsGate | None = None) -> orchestrator_pb2.Result:
        """Runs an instruction and returns its final Result (sequence 0: the caller numbers events).

        Progress events (token deltas) go to `emit` as non-final Results, in order, before the
        final one is returned. Errors of the instruction, including a unit's, come back in the
        final Result's status and are never raised; cancellation of the calling task propagates.
        `caller` has been authorized for the instruction (access.Gate); a user key gets the row's
        own_handler where it has one (its own things instead of the whole list). `effects_gate` is
        what the handler awaits before its first effect (Run.before_effects).
        """
        kind = instruction.WhichOneof("instruction")
        try:
            entry = entry_of(instruction)
            if kind is None:
                raise InvalidArgument("the instruction sets no instruction type", reason="MALFORMED_INSTRUCTION")
            if entry is None:
                # The contract has a type this build's catalog lacks (a test keeps them in step).
                raise Internal(f"this orchestrator has no handler for {kind.upper()}",
                               reason="INSTRUCTION_NOT_IN_CATALOG")
            try:
                handler = entry.own_handler if caller.role == USER and entry.own_handler else entry.handler
                run = Run(self._units, instruction, emit, caller, self._max_page_bytes, effects_gate)
                payload = await handler(run, getattr(instruction, kind))
            finally:
                if entry.changes_models:
                    self._units.models.models_changed()
        except Exception as error:  # noqa: BLE001 - every failure becomes the instruction's outcome
            status = status_of(error)
            if len(status.message) > self._max_echo_chars:
                status.message = (status.message[:self._max_echo_chars]
                                  + f"... (cut at {self._max_echo_chars:,} characters, LLMCHATLINKER_MAX_ECHO_CHARS)")
            return failed_result(instruction.instruction_id, instruction_type_of(instruction), status)
        return orchestrator_pb2.Result(
            instruction_id=instruction.instruction_id,
            instruction_type=instruction_type_of(instruction),
            final=True,
            status=orchestrator_pb2.Status(code=_OK),
            **payload,
        )
