"""ReadCache on its own: reuse within the ttl, shared loads, failures, clearing and the size bound."""

import asyncio

import pytest

from services.common.errors import NotFound
from services.common.readcache import ReadCache
from testkit.clock import Clock


class Loads:
    """A load function that counts its calls; hold() makes them wait until release()."""

    def __init__(self, value="value") -> None:
        self.value = value
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    def hold(self) -> None:
        self.gate = asyncio.Event()

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()

    async def __call__(self):
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


async def test_a_value_is_reused_until_the_ttl_ends_then_read_again():
    clock, load = Clock(), Loads()
    cache = ReadCache(2.0, clock=clock)

    assert await cache.get("m", load) == "value"
    clock.now += 1.999
    assert await cache.get("m", load) == "value"
    assert load.calls == 1
    clock.now += 0.001
    assert await cache.get("m", load) == "value"
    assert load.calls == 2


async def test_the_ttl_counts_from_the_start_of_the_read():
    clock, load = Clock(), Loads()
    cache = ReadCache(2.0, clock=clock)
    load.hold()

    first = asyncio.ensure_future(cache.get("m", load))
    await load.started.wait()
    clock.now += 1.5  # a slow read
    load.release()
    await first
    clock.now += 0.5

    await cache.get("m", load)
    assert load.calls == 2


async def test_keys_are_kept_apart():
    load_a, load_b = Loads("a"), Loads("b")
    cache = ReadCache(2.0, clock=Clock())

    assert (await cache.get("a", load_a), await cache.get("b", load_b)) == ("a", "b")
    assert (await cache.get("a", load_a), await cache.get("b", load_b)) == ("a", "b")
    assert (load_a.calls, load_b.calls) == (1, 1)


async def test_concurrent_misses_share_one_load():
    load = Loads()
    cache = ReadCache(2.0, clock=Clock())
    load.hold()

    waiting = [asyncio.ensure_future(cache.get("m", load)) for _ in range(50)]
    await load.started.wait()
    load.release()

    assert await asyncio.gather(*waiting) == ["value"] * 50
    assert load.calls == 1


async def test_a_failed_load_reaches_every_waiter_and_is_not_kept():
    load = Loads(NotFound("llm 'm' not found", reason="LLM_NOT_FOUND"))
    cache = ReadCache(2.0, clock=Clock())
    load.hold()

    waiting = [asyncio.ensure_future(cache.get("m", load)) for _ in range(5)]
    await load.started.wait()
    load.release()
    results = await asyncio.gather(*waiting, return_exceptions=True)

    assert all(isinstance(result, NotFound) for result in results)
    with pytest.raises(NotFound):
        await cache.get("m", load)
    assert load.calls == 2


async def test_a_caller_that_gives_up_leaves_the_shared_load_running():
    load = Loads()
    cache = ReadCache(2.0, clock=Clock())
    load.hold()

    quitter = asyncio.ensure_future(cache.get("m", load))
    stayer = asyncio.ensure_future(cache.get("m", load))
    await load.started.wait()
    quitter.cancel()
    await asyncio.sleep(0)
    load.release()

    assert await stayer == "value"
    assert quitter.cancelled() and load.calls == 1
    assert await cache.get("m", load) == "value" and load.calls == 1


async def test_clear_forgets_kept_values():
    load = Loads()
    cache = ReadCache(2.0, clock=Clock())
    await cache.get("m", load)

    cache.clear()
    await cache.get("m", load)

    assert load.calls == 2


async def test_a_load_in_flight_when_cleared_is_answered_but_not_kept_or_shared():
    old, new = Loads("old"), Loads("new")
    cache = ReadCache(2.0, clock=Clock())
    old.hold()

    before = asyncio.ensure_future(cache.get("m", old))
    await old.started.wait()
    cache.clear()  # a write committed while the read was running
    after = await cache.get("m", new)  # does not join the older read
    old.release()

    assert (await before, after) == ("old", "new")
    assert await cache.get("m", old) == "new" and old.calls == 1


async def test_a_ttl_of_zero_loads_every_time():
    load = Loads()
    cache = ReadCache(0, clock=Clock())

    for _ in range(3):
        assert await cache.get("m", load) == "value"

    assert load.calls == 3


async def test_past_the_bound_the_oldest_entry_goes():
    loads = {key: Loads(key) for key in "abc"}
    cache = ReadCache(2.0, max_entries=2, clock=Clock())

    for key in "abc":
        await cache.get(key, loads[key])
    for key in "cba":
        await cache.get(key, loads[key])

    assert {key: load.calls for key, load in loads.items()} == {"a": 2, "b": 1, "c": 1}
