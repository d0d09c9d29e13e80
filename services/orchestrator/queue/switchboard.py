"""The Switchboard: connects this replica's Submit calls to the runs and replies of their instructions."""

from __future__ import annotations

import asyncio
import collections
import logging

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.orchestrator.queue.transport import Message

log = logging.getLogger(__name__)

Result = orchestrator_pb2.Result

# Ids of instructions whose Submit caller left before they ran: remembered this many, newest kept.
WITHDRAWN_MEMORY = 10_000


class Listener:
    """The events of one instruction for one Submit call, in order. Deltas that queue up while the
    call is still writing an earlier event are taken as one delta: a busy stream gets fewer,
    larger messages, an idle one each delta at once, and the text and order are the same."""

    def __init__(self) -> None:
        self._events: collections.deque[Result] = collections.deque()
        self._arrived = asyncio.Event()

    def put(self, result: Result) -> None:
        self._events.append(result)
        self._arrived.set()

    async def next(self) -> Result:
        while not self._events:
            self._arrived.clear()
            await self._arrived.wait()
        first = self._events.popleft()
        if not (_is_delta(first) and self._events and _is_delta(self._events[0])):
            return first
        merged = Result()
        merged.CopyFrom(first)
        parts = [first.delta.content]
        while self._events and _is_delta(self._events[0]):
            later = self._events.popleft()
            parts.append(later.delta.content)
            merged.sequence = later.sequence
        merged.delta.content = "".join(parts)
        return merged


def _is_delta(result: Result) -> bool:
    return result.WhichOneof("payload") == "delta"


class Switchboard:
    """Connects the Submit calls of this process to the cycle runs and reply messages of their
    instructions, by instruction id (which is also the request's correlation id)."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[Listener]] = {}
        self._executions: dict[str, asyncio.Task] = {}
        self._withdrawn: collections.OrderedDict[str, None] = collections.OrderedDict()

    def listen(self, instruction_id: str) -> Listener:
        listener = Listener()
        self._listeners.setdefault(instruction_id, set()).add(listener)
        self._withdrawn.pop(instruction_id, None)
        return listener

    def forget(self, instruction_id: str, listener: Listener, finished: bool) -> None:
        """Called when a Submit call ends. The last caller to leave before the final result
        withdraws the instruction: its generation in progress here is cancelled, and if it has
        not started here yet it will not run."""
        listeners = self._listeners.get(instruction_id, set())
        listeners.discard(listener)
        if listeners:
            return
        self._listeners.pop(instruction_id, None)
        if finished:
            return
        self._withdrawn[instruction_id] = None
        while len(self._withdrawn) > WITHDRAWN_MEMORY:
            self._withdrawn.popitem(last=False)
        execution = self._executions.get(instruction_id)
        if execution is not None:
            log.info("instruction %s: caller cancelled; cancelling its execution", instruction_id)
            execution.cancel()

    def listening(self) -> list[str]:
        """The ids some Submit call of this process listens to now."""
        return list(self._listeners)

    def is_listening(self, instruction_id: str) -> bool:
        return bool(self._listeners.get(instruction_id))

    def is_withdrawn(self, instruction_id: str) -> bool:
        return instruction_id in self._withdrawn

    def deliver(self, instruction_id: str, result: Result) -> bool:
        listeners = self._listeners.get(instruction_id)
        for listener in listeners or ():
            listener.put(result)
        return bool(listeners)

    def on_reply(self, message: Message) -> None:
        """A Result on this replica's reply queue: another replica ran one of our instructions."""
        try:
            result = Result.FromString(message.body)
        except Exception:  # noqa: BLE001 - a stray message on our queue
            log.warning("dropping a reply that is not a Result (correlation id %s)", message.correlation_id)
            return
        self.deliver(message.correlation_id or result.instruction_id, result)

    def executing(self, instruction_id: str, task: asyncio.Task) -> None:
        self._executions[instruction_id] = task

    def executed(self, instruction_id: str, task: asyncio.Task) -> None:
        if self._executions.get(instruction_id) is task:
            del self._executions[instruction_id]
