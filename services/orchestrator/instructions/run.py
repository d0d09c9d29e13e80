"""What every Control Unit handler works with: one instruction's run, and helpers shared by the handlers."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import message as protobuf_message

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import instruction_type_of
from services.common.errors import Aborted, InvalidArgument
from services.common.keys import ADMIN, Caller, scoped
from services.common.limits import bounded_id
from services.orchestrator.units.gateways import Units

log = logging.getLogger(__name__)

# A list asked for with page_size 0 and no page_token is followed to its end, up to this many
# items (legacy JSON lists have no paging); the rest stays reachable through next_page_token.
MAX_COLLECTED_ITEMS = 10_000
# Page size used while following a list: the units' maximum, so 10,000 items take 10 calls.
COLLECTING_PAGE_SIZE = 1_000

Emit = Callable[[orchestrator_pb2.Result], Awaitable[None]]
# Returns once the instruction may take effect; raises AlreadyAnswered when it ran before.
EffectsGate = Callable[[], Awaitable[None]]
# A handler's answer: the Result payload as keyword arguments ({"user": user}); {} for none.
Payload = dict[str, protobuf_message.Message]
# The most bytes of messages one CHAT_LOAD answers (LLMCHATLINKER_MAX_CHAT_LOAD_BYTES).
DEFAULT_MAX_PAGE_BYTES = 8 * 1024 * 1024
# Who runs an instruction when nobody is named: a caller on a suite without authentication.
ANYONE = Caller(role=ADMIN)


class AlreadyAnswered(Aborted):
    """The ledger holds this instruction's result: its run stops before any effect."""

    def __init__(self) -> None:
        super().__init__("the instruction ran before; answered from the ledger", reason="ALREADY_ANSWERED")


@dataclasses.dataclass
class Run:
    """One instruction being executed."""

    units: Units
    instruction: orchestrator_pb2.Instruction
    emit: Emit
    caller: Caller = ANYONE
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    effects_gate: EffectsGate | None = None
    _emit_failed: bool = dataclasses.field(default=False, init=False)

    async def before_effects(self) -> None:
        """Where the instruction's ledger lookup runs alongside its reads (catalog.LOOKED_UP_ALONGSIDE),
        waits for it: raises AlreadyAnswered when the instruction ran before, so nothing is done
        twice; the cycle then answers from the ledger."""
        if self.effects_gate is not None:
            await self.effects_gate()

    def request_id(self, step: str) -> str:
        """The idempotency key of one mutating unit call of this instruction: its id as its
        caller's own, so another caller's instruction of the same id is never answered from it."""
        return request_id(scoped(self.caller.scope, self.instruction.instruction_id), step)

    async def progress(self, **payload: protobuf_message.Message) -> None:
        """Passes a non-final event to `emit`. A failing listener is logged once and then ignored:
        the instruction is durable work and finishes whether or not anyone watches it."""
        if self._emit_failed:
            return
        event = orchestrator_pb2.Result(
            instruction_id=self.instruction.instruction_id,
            instruction_type=instruction_type_of(self.instruction),
            final=False,
            status=orchestrator_pb2.Status(code=grpc.StatusCode.OK.value[0]),
            **payload,
        )
        try:
            await self.emit(event)
        except Exception:  # noqa: BLE001 - the listener's fault, not the instruction's
            self._emit_failed = True
            log.exception("progress listener of instruction %s failed; further progress is dropped",
                          self.instruction.instruction_id)


def present(request: protobuf_message.Message, *names: str) -> dict:
    """The optional fields among `names` that are set, as keyword arguments."""
    return {name: getattr(request, name) for name in names if request.HasField(name)}


def require(value: str, name: str) -> str:
    """Refuses an empty id where an empty value would widen the call (a list of everything)."""
    if not value:
        raise InvalidArgument(f"{name} is required", reason="INVALID_FIELD", field=name)
    return value


async def collect(method: Callable, request: protobuf_message.Message, items: str) -> tuple[list, str]:
    """The items of a unit list and the token after them.

    With page_size > 0 or a page_token the caller pages: one page is fetched. With neither, the
    list is followed to its end (at most MAX_COLLECTED_ITEMS items).
    """
    if request.page_size or request.page_token:
        response = await method(request)
        return list(getattr(response, items)), response.next_page_token
    request.page_size = COLLECTING_PAGE_SIZE
    collected: list = []
    while True:
        response = await method(request)
        collected.extend(getattr(response, items))
        if not response.next_page_token or len(collected) >= MAX_COLLECTED_ITEMS:
            return collected, response.next_page_token
        request.page_token = response.next_page_token


def request_id(instruction_id: str, step: str) -> str:
    """The unit request id of one step of an instruction: `{instruction_id}:{step}`.

    An instruction without an id gets '' (no de-duplication): sharing ':step' between unrelated
    instructions would answer all of them with the first one's response. An id too long for the
    units is replaced by its SHA-256 (limits.bounded_id).
    """
    return bounded_id(f"{instruction_id}:{step}") if instruction_id else ""
