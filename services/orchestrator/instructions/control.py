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
from services.orchestrator.errors import failed_result, status_of
from services.orchestrator.instructions.catalog import entry_of
from services.orchestrator.instructions.run import Emit, Gate, Run
from services.orchestrator.units.gateways import Units

_OK = grpc.StatusCode.OK.value[0]


class ControlUnit:
    """Executes instructions on the units; one instance serves every instruction concurrently."""

    def __init__(self, units: Units):
        self._units = units

    async def execute(self, instruction: orchestrator_pb2.Instruction, emit: Emit,
                      gate: Gate | None = None) -> orchestrator_pb2.Result:
        """Runs an instruction and returns its final Result (sequence 0: the caller numbers events).
        A `gate` is what the handler awaits before its first effect (Run.before_effects).

        Progress events (token deltas) go to `emit` as non-final Results, in order, before the
        final one is returned. Errors of the instruction, including a unit's, come back in the
        final Result's status and are never raised; cancellation of the calling task propagates.
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
                payload = await entry.handler(Run(self._units, instruction, emit, gate), getattr(instruction, kind))
            finally:
                if entry.changes_models:
                    self._units.models.models_changed()
        except Exception as error:  # noqa: BLE001 - every failure becomes the instruction's outcome
            return failed_result(instruction.instruction_id, instruction_type_of(instruction), status_of(error))
        return orchestrator_pb2.Result(
            instruction_id=instruction.instruction_id,
            instruction_type=instruction_type_of(instruction),
            final=True,
            status=orchestrator_pb2.Status(code=_OK),
            **payload,
        )
