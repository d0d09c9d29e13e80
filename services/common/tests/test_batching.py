"""The Batcher: calls made together travel as one batch, each caller gets its own outcome."""

import asyncio

import pytest

from services.common import batching
from services.common.batching import Batcher


class Recorder:
    """A batch sender that logs each batch and, while `gate` is clear, holds it."""

    def __init__(self, answer=lambda item: item * 10):
        self.batches: list[list] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self._answer = answer

    async def send(self, items: list) -> list:
        self.batches.append(list(items))
        await self.gate.wait()
        return [self._answer(item) for item in items]


async def test_calls_made_in_the_same_turn_go_as_one_batch_and_are_answered_in_order():
    recorder = Recorder()
    batcher = Batcher(recorder.send)
    assert await asyncio.gather(*(batcher.call(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1, 2, 3, 4]]


async def test_a_lone_call_goes_at_once():
    recorder = Recorder()
    batcher = Batcher(recorder.send)
    assert await batcher.call(7) == 70
    assert await batcher.call(8) == 80
    assert recorder.batches == [[7], [8]]


async def test_calls_made_while_every_batch_is_in_flight_join_the_next_one():
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.send, max_in_flight=1)
    first = asyncio.ensure_future(batcher.call(1))
    while not recorder.batches:
        await asyncio.sleep(0)
    later = [asyncio.ensure_future(batcher.call(i)) for i in (2, 3, 4)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert recorder.batches == [[1]]  # the others wait for the one in flight
    recorder.gate.set()
    assert await asyncio.gather(first, *later) == [10, 20, 30, 40]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_batches_respect_the_count_and_weight_limits(monkeypatch):
    recorder = Recorder()
    batcher = Batcher(recorder.send, max_batch=3, max_in_flight=10)
    await asyncio.gather(*(batcher.call(i) for i in range(7)))
    assert recorder.batches == [[0, 1, 2], [3, 4, 5], [6]]

    monkeypatch.setattr(batching, "MAX_BATCH_BYTES", 10)
    recorder.batches.clear()
    weighed = Batcher(recorder.send, weigh=lambda item: item, max_in_flight=10)
    await asyncio.gather(*(weighed.call(i) for i in (4, 5, 20, 1, 2)))
    # 4+5 fit; 20 alone is over the limit but goes (alone); 1+2 fit.
    assert recorder.batches == [[4, 5], [20], [1, 2]]


async def test_an_outcome_that_is_an_error_goes_to_its_caller_alone():
    batcher = Batcher(Recorder(answer=lambda item: ValueError(f"bad {item}") if item == 2 else item).send)
    outcomes = await asyncio.gather(*(batcher.call(i) for i in range(4)), return_exceptions=True)
    assert outcomes[:2] == [0, 1] and outcomes[3] == 3
    assert isinstance(outcomes[2], ValueError) and str(outcomes[2]) == "bad 2"


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_still_goes():
    attempts = []

    async def send(items):
        attempts.append(items)
        if len(attempts) == 1:
            raise ConnectionError("unit down")
        return items

    batcher = Batcher(send)
    outcomes = await asyncio.gather(*(batcher.call(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert await batcher.call(9) == 9


async def test_a_cancelled_caller_does_not_cancel_the_batch_it_rides_in():
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.send)
    calls = [asyncio.ensure_future(batcher.call(i)) for i in range(3)]
    while not recorder.batches:
        await asyncio.sleep(0)
    calls[1].cancel()
    recorder.gate.set()
    assert await calls[0] == 0 and await calls[2] == 20
    with pytest.raises(asyncio.CancelledError):
        await calls[1]


async def test_an_item_whose_caller_left_before_it_was_sent_is_not_sent():
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.send, max_in_flight=1)
    first = asyncio.ensure_future(batcher.call(1))
    while not recorder.batches:
        await asyncio.sleep(0)
    gone, stays = asyncio.ensure_future(batcher.call(2)), asyncio.ensure_future(batcher.call(3))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.gate.set()
    assert await first == 10 and await stays == 30
    assert recorder.batches == [[1], [3]]
