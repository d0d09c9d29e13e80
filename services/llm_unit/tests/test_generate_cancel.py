"""A generation that is cancelled or runs out of time hangs up on its provider."""

import asyncio

import grpc

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from testkit.llm_unit import HELLO, add_model, expect_error, generate, running_unit, settings_for, wait_for_stat


def start(stub, llm_id: str, **fields):
    return stub.GenerateReply(pb.GenerateReplyRequest(llm_id=llm_id, messages=HELLO, **fields))


async def test_cancelling_mid_stream_closes_the_provider_connection(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@tokens=1000,interval_ms=20")
    call = start(sqlite_unit.stub, llm.llm_id)
    first = await call.read()
    assert first.delta.content == "t0 "

    call.cancel()

    stats = await wait_for_stat(provider_server, "client_disconnected", 1)
    assert stats["client_disconnected"] == 1 and stats["completed"] == 0 and stats["in_flight"] == 0


async def test_cancelling_before_the_first_byte_closes_the_provider_connection(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@fail=stall")
    call = start(sqlite_unit.stub, llm.llm_id)
    await wait_for_stat(provider_server, "in_flight", 1)

    call.cancel()

    stats = await wait_for_stat(provider_server, "client_disconnected", 1)
    assert stats["client_disconnected"] == 1 and stats["in_flight"] == 0


async def test_cancelling_a_caller_that_stopped_reading_still_hangs_up(sqlite_unit, provider_server):
    # A reply far larger than the HTTP/2 window: the unit ends up waiting to send to a
    # caller that does not read, with its reply generator parked at a yield.
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@tokens=200000")
    call = start(sqlite_unit.stub, llm.llm_id)
    await call.read()
    await asyncio.sleep(0.5)

    call.cancel()

    stats = await wait_for_stat(provider_server, "client_disconnected", 1)
    assert stats["client_disconnected"] == 1 and stats["completed"] == 0


async def test_generation_deadline_hangs_up_on_a_stalled_provider(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@fail=stall")

    await expect_error(generate(sqlite_unit.stub, llm.llm_id, timeout_ms=200),
                       grpc.StatusCode.DEADLINE_EXCEEDED, "GENERATION_TIMEOUT")

    stats = await wait_for_stat(provider_server, "client_disconnected", 1)
    assert stats["client_disconnected"] == 1


async def test_generation_deadline_cuts_off_a_stream_that_keeps_producing(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@tokens=100000,interval_ms=5")

    # Long enough for the first tokens to arrive even on a loaded machine; the stream itself never ends.
    call = start(sqlite_unit.stub, llm.llm_id, timeout_ms=2000)
    deltas = []
    await expect_error(_collect(call, deltas), grpc.StatusCode.DEADLINE_EXCEEDED, "GENERATION_TIMEOUT")

    assert deltas and "".join(deltas).startswith("t0 t1 t2 ")
    assert (await wait_for_stat(provider_server, "client_disconnected", 1))["client_disconnected"] == 1


async def test_callers_grpc_deadline_bounds_the_generation(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@fail=stall")

    call = sqlite_unit.stub.GenerateReply(pb.GenerateReplyRequest(llm_id=llm.llm_id, messages=HELLO), timeout=0.3)
    try:
        await _collect(call, [])
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        raise AssertionError("the stalled generation finished")

    assert (await wait_for_stat(provider_server, "client_disconnected", 1))["client_disconnected"] == 1


async def test_units_default_generation_timeout_applies_when_the_request_gives_none(tmp_path, provider_server):
    settings = settings_for(f"sqlite:///{tmp_path / 'unit.db'}", generation_timeout_ms=250)
    async with running_unit(settings) as unit:
        llm = await add_model(unit.stub, provider_server.openai_url, model="m@fail=stall")
        error = await expect_error(generate(unit.stub, llm.llm_id), grpc.StatusCode.DEADLINE_EXCEEDED,
                                   "GENERATION_TIMEOUT")
    assert "0.25 s" in error.details()


async def test_unit_keeps_serving_after_cancellations(sqlite_unit, provider_server):
    slow = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@tokens=500,interval_ms=10")
    calls = [start(sqlite_unit.stub, slow.llm_id) for _ in range(10)]
    for call in calls:
        await call.read()
        call.cancel()

    fast = await add_model(sqlite_unit.stub, provider_server.openai_url, model="quick", name="fast")
    _, final = await generate(sqlite_unit.stub, fast.llm_id)
    assert final.content == "echo: hello big world"
    assert (await wait_for_stat(provider_server, "client_disconnected", 10))["client_disconnected"] == 10


async def _collect(call, deltas: list) -> None:
    async for event in call:
        if event.HasField("delta"):
            deltas.append(event.delta.content)
