"""SpentTokens on its own: users read together, a kept value used as read and then while it is read
again in the background, this replica's writes added, and a value that may include a write read again."""

import asyncio
import datetime
import logging

import pytest

from services.llm_unit.spent import GATHER_SECONDS, SpentTokens
from testkit.clock import Clock

DAY = datetime.datetime(2026, 12, 3, tzinfo=datetime.timezone.utc)
MONTH = DAY.replace(day=1)


def key(user_id: str):
    return (user_id, DAY, MONTH)


class Reads:
    """The database's side: what is spent by user id, and the reads made (each a list of user ids)."""

    def __init__(self) -> None:
        self.spent: dict[str, int] = {}
        self.reads: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = False

    async def __call__(self, keys):
        self.reads.append([user_id for user_id, _, _ in keys])
        await self.gate.wait()
        if self.failing:
            raise ConnectionError("the database is gone")
        return [(self.spent.get(user_id, 0), self.spent.get(user_id, 0)) for user_id, _, _ in keys]


@pytest.fixture
def tokens():
    reads, clock = Reads(), Clock()
    return SpentTokens(reads, ttl=1.0, stale_for=60.0, max_entries=100, clock=clock), reads, clock


async def settle():
    """Until a read in the background, which waits for others to join it, has ended."""
    await asyncio.sleep(GATHER_SECONDS * 2)


async def test_users_asked_together_are_read_together_and_kept(tokens):
    spent, reads, clock = tokens
    reads.spent = {"u1": 5, "u2": 7}
    assert await asyncio.gather(spent.get(key("u1")), spent.get(key("u2")), spent.get(key("u1"))) == [
        (5, 5), (7, 7), (5, 5)]
    assert reads.reads == [["u1", "u2"]]
    clock.now += 0.9
    assert await spent.get(key("u1")) == (5, 5) and len(reads.reads) == 1


async def test_past_the_ttl_the_kept_value_is_used_while_it_is_read_again(tokens):
    spent, reads, clock = tokens
    reads.spent = {"u1": 5}
    await spent.get(key("u1"))
    reads.spent = {"u1": 50}
    clock.now += 30

    reads.gate.clear()
    assert await spent.get(key("u1")) == (5, 5)  # at once, the read started behind it
    await settle()
    assert await spent.get(key("u1")) == (5, 5)  # while it is read: not asked for twice
    reads.gate.set()
    await settle()
    assert await spent.get(key("u1")) == (50, 50) and len(reads.reads) == 2
    clock.now += 62
    reads.spent = {"u1": 500}
    assert await spent.get(key("u1")) == (500, 500)  # too old to use: waited for


async def test_tokens_written_here_are_added_and_a_value_read_during_the_write_is_read_again(tokens):
    spent, reads, clock = tokens
    reads.spent = {"before": 5, "during": 5}
    await spent.get(key("before"))
    clock.now += 0.1
    written_since = clock()
    reads.gate.clear()
    during = asyncio.ensure_future(spent.get(key("during")))
    await settle()

    for user_id in ("before", "during", "never-read"):
        spent.added(key(user_id), 9, written_since)
    reads.spent["during"] = 14  # the read in flight sees the write
    reads.gate.set()

    assert await spent.get(key("before")) == (14, 14) and await during == (14, 14)
    assert await spent.get(key("during")) == (14, 14)  # not kept (it may or may not hold the write): read again
    assert reads.reads == [["before"], ["during"], ["during"]]
    assert await spent.get(key("never-read")) == (0, 0)


async def test_users_returning_one_by_one_are_read_again_together(tokens):
    spent, reads, clock = tokens
    await asyncio.gather(*(spent.get(key(f"u{i}")) for i in range(3)))
    clock.now += 2

    for i in range(3):  # as a burst of generations comes: each a loop turn or more apart
        await spent.get(key(f"u{i}"))
        await asyncio.sleep(GATHER_SECONDS / 10)
    await settle()

    assert reads.reads == [["u0", "u1", "u2"], ["u0", "u1", "u2"]]


async def test_while_reads_fail_the_kept_value_is_used_and_the_failure_said_once(tokens, caplog):
    spent, reads, clock = tokens
    reads.spent = {"u1": 5}
    await spent.get(key("u1"))
    reads.failing = True
    caplog.set_level(logging.INFO, logger="services.llm_unit.spent")

    for _ in range(3):  # refreshes that fail
        clock.now += 2
        assert await spent.get(key("u1")) == (5, 5)
        await settle()
    with pytest.raises(ConnectionError):  # a user never read must wait for a read, and hears it failed
        await spent.get(key("u2"))
    assert len(reads.reads) == 5  # the first, three refreshes, u2
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "could not be read (the database is gone)" in caplog.records[0].getMessage()

    reads.failing = False
    reads.spent = {"u1": 9}
    clock.now += 2
    await spent.get(key("u1"))
    await settle()
    assert await spent.get(key("u1")) == (9, 9)
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
