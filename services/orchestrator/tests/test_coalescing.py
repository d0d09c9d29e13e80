"""Deltas that queue up behind a busy hop go on as one: a Submit stream's listener and a remote
caller's reply queue. Under random timings and slow readers the text and the order of every event
are exactly kept, and nothing but deltas is ever joined."""

import asyncio
import random

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.pipeline import deltas as deltas_module
from services.orchestrator.pipeline.deltas import BatchedDeltas
from services.orchestrator.queue.switchboard import Listener

TOKENS = [f"t{i} " for i in range(300)]


def _delta(sequence: int, text: str) -> pb.Result:
    result = pb.Result(instruction_id="i", sequence=sequence)
    result.delta.content = text
    return result


def _waiting(sequence: int) -> pb.Result:
    result = pb.Result(instruction_id="i", sequence=sequence)
    result.waiting.message = "a unit is out of reach"
    return result


def _events(seed: int) -> list[pb.Result]:
    """The tokens as deltas, with a few other (non-delta) events among them, then a final result."""
    rng = random.Random(seed)
    events, sequence = [], 0
    for token in TOKENS:
        sequence += 1
        events.append(_delta(sequence, token))
        if rng.random() < 0.03:
            sequence += 1
            events.append(_waiting(sequence))
    events.append(pb.Result(instruction_id="i", sequence=sequence + 1, final=True))
    return events


def _shape(events: list[pb.Result]) -> list[str]:
    """The events with each run of deltas written as one: what must survive any joining."""
    shape: list[str] = []
    for event in events:
        kind = event.WhichOneof("payload") or ("final" if event.final else "")
        if kind == "delta" and shape and shape[-1].startswith("delta:"):
            shape[-1] += event.delta.content
        else:
            shape.append(f"delta:{event.delta.content}" if kind == "delta" else kind)
    return shape


async def test_a_slow_submit_stream_gets_every_event_in_order_with_deltas_joined():
    for seed in range(5):
        rng = random.Random(seed)
        listener, sent = Listener(), _events(seed)

        async def produce():
            for event in sent:
                listener.put(event)
                if rng.random() < 0.3:
                    await asyncio.sleep(rng.random() * 0.002)

        async def consume() -> list[pb.Result]:
            taken = []
            while not (taken and taken[-1].final):
                taken.append(await listener.next())
                await asyncio.sleep(rng.random() * 0.003)  # a reader that takes its time
            return taken

        _, taken = await asyncio.gather(produce(), consume())

        assert _shape(taken) == _shape(sent)
        assert len(taken) < len(sent)  # the slow reader got fewer, larger messages
        assert [event.sequence for event in taken] == sorted(event.sequence for event in taken)


async def test_an_idle_submit_stream_gets_each_delta_alone():
    listener, received = Listener(), []
    for sequence, token in enumerate(TOKENS[:20], start=1):
        listener.put(_delta(sequence, token))
        received.append(await listener.next())
    assert [event.delta.content for event in received] == TOKENS[:20]


class RecordingTransport:
    def __init__(self):
        self.published: list[pb.Result] = []

    def publish_nowait(self, routing_key, message, persistent=False):
        self.published.append(pb.Result.FromString(message.body))


async def test_deltas_to_a_reply_queue_go_first_at_once_then_joined_per_window(monkeypatch):
    monkeypatch.setattr(deltas_module, "DELTA_BATCH_SECONDS", 0.01)
    for seed in range(5):
        rng = random.Random(seed)
        transport = RecordingTransport()
        route = BatchedDeltas(transport, "replies", "c")

        route.delta(_delta(1, TOKENS[0]))
        assert [event.delta.content for event in transport.published] == [TOKENS[0]]  # no waiting for the first
        for sequence, token in enumerate(TOKENS[1:], start=2):
            route.delta(_delta(sequence, token))
            if rng.random() < 0.2:
                await asyncio.sleep(rng.random() * 0.02)
        route.flush()

        assert "".join(event.delta.content for event in transport.published) == "".join(TOKENS)
        assert [event.sequence for event in transport.published] == sorted(event.sequence for event in transport.published)
        assert transport.published[-1].sequence == len(TOKENS)
        assert len(transport.published) < len(TOKENS)
