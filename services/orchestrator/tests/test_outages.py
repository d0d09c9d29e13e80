"""Outages are waited out, not answered: an instruction whose unit (or provider) cannot be reached
goes back on the queue (or, in a chat, waits in its place) and runs again once it can, for up to the
outage wait, and takes effect once; the chat's later instructions still come after it."""

import asyncio
import json
import uuid

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from testkit.llm_server import LlmServer
from testkit.ports import free_ports


async def test_a_unit_down_for_a_while_delays_the_instruction_instead_of_failing_it(
        suite, orchestrators, amqp_url, legacy, blocking_call):
    await orchestrators(suite, amqp_url)
    client = await blocking_call(legacy)
    await suite.stop_unit("user_unit")
    waiting = await blocking_call(client.send, "USER_CREATE", {"username": "patient"})
    await blocking_call(client.pump, 4)  # the channel's own retries are over: the orchestrator waits it out
    assert waiting not in client.replies
    await suite.restart_unit("user_unit")

    reply = json.loads((await blocking_call(client.wait, [waiting]))[waiting][0])
    assert reply["status"] == "success", reply
    assert [user.username for user in await suite.users()] == ["patient"]


async def test_an_outage_longer_than_the_wait_is_answered_unavailable(
        suite, orchestrators, amqp_url, legacy, blocking_call, queue_name):
    server = await orchestrators(suite, amqp_url, outage_wait_ms=2_000)
    client = await blocking_call(legacy)
    await suite.stop_unit("chat_unit")
    correlation_id = await blocking_call(client.send, "CHAT_LIST")

    reply = json.loads((await blocking_call(client.wait, [correlation_id], lambda body: True, 60))[correlation_id][0])
    assert reply["status"] == "error" and "unavailable" in reply["message"], reply
    assert "waited 2 s" in reply["message"] or "waited 3 s" in reply["message"], reply
    assert await blocking_call(client.message_count, queue_name) == 0
    assert await blocking_call(client.take_all, server.transport.dead_letter_queue) == []  # an outage, not poison


async def test_the_ledger_out_of_reach_is_waited_out_for_as_long_then_answered_unavailable(
        suite, orchestrators, amqp_url, legacy, blocking_call, queue_name):
    await orchestrators(suite, amqp_url, outage_wait_ms=2_000)
    client = await blocking_call(legacy)
    await suite.stop_unit("db_unit")
    correlation_id = await blocking_call(client.send, "USER_CREATE", {"username": "unledgered"})

    reply = json.loads((await blocking_call(client.wait, [correlation_id], lambda body: True, 60))[correlation_id][0])
    assert reply["status"] == "error" and "unavailable" in reply["message"], reply
    assert "waited" in reply["message"], reply
    assert await blocking_call(client.message_count, queue_name) == 0
    await suite.restart_unit("db_unit")


async def test_a_submit_caller_sees_what_its_instruction_waits_for_then_its_result(suite, orchestrators, submit_stub):
    server = await orchestrators(suite, None)
    await suite.stop_unit("user_unit")
    async with submit_stub(server) as stub:
        call = stub.Submit(pb.SubmitRequest(instruction=pb.Instruction(user_create=pb.UserCreate(username="told"))))
        events = []
        async for response in call:
            events.append(response.result)
            if response.result.HasField("waiting") and len(events) == 2:
                await suite.restart_unit("user_unit")
    accepted, waiting, *_, final = events
    assert accepted.HasField("accepted")
    assert waiting.waiting.reason == "UNIT_UNAVAILABLE" and waiting.waiting.message
    assert waiting.waiting.give_up_time.ToSeconds() > waiting.waiting.retry_time.ToSeconds() > 0
    assert final.final and final.status.code == 0 and final.user.username == "told"


async def test_a_submit_caller_may_withdraw_a_waiting_instruction(suite, orchestrators, submit_stub):
    server = await orchestrators(suite, None)
    await suite.stop_unit("user_unit")
    async with submit_stub(server) as stub:
        call = stub.Submit(pb.SubmitRequest(instruction=pb.Instruction(user_create=pb.UserCreate(username="gone"))))
        async for response in call:
            if response.result.HasField("waiting"):
                call.cancel()
                break
        assert await call.code() == grpc.StatusCode.CANCELLED
    await suite.restart_unit("user_unit")
    await asyncio.sleep(3)  # long enough for the message to come round again
    assert await suite.users() == []


async def test_a_unit_stalled_after_it_committed_takes_effect_once(
        suite, orchestrators, amqp_url, legacy, blocking_call, stalling_proxy):
    """The user unit commits the user, then its answer is held past the call's deadline: the
    orchestrator waits the outage out, asks again, and the unit answers from its request ledger."""
    proxy = await stalling_proxy(suite.address("user_unit"))
    await orchestrators(suite, amqp_url, user_unit_addr=proxy.address)
    client = await blocking_call(legacy)
    proxy.stall()
    correlation_id = await blocking_call(client.send, "USER_CREATE", {"username": "once"})
    for _ in range(100):  # the unit has the request, and commits it; its answer is held
        if await suite.users():
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(11)  # past the unit call's deadline (10 s)
    proxy.release()

    reply = json.loads((await blocking_call(client.wait, [correlation_id]))[correlation_id][0])
    assert reply["status"] == "success", reply
    assert [user.username for user in await suite.users()] == ["once"]


async def test_a_chat_s_next_instruction_waits_for_the_one_waiting_out_an_outage(suite, orchestrators, submit_stub):
    """The first generation's provider cannot be reached for a while; the second, on a provider
    that answers, comes after it in the chat all the same."""
    (down_port,) = free_ports(1)
    server = await orchestrators(suite, None)
    async with submit_stub(server) as stub:
        async def final(**instruction) -> pb.Result:
            call = stub.Submit(pb.SubmitRequest(instruction=pb.Instruction(**instruction)), timeout=60)
            return [response.result async for response in call][-1]

        async def model_on(endpoint: str) -> str:
            provider = await final(llm_provider_add=pb.LlmProviderAdd(name=f"p-{uuid.uuid4().hex[:8]}",
                                                                      api_endpoint=endpoint))
            return (await final(llm_add=pb.LlmAdd(provider_id=provider.provider.provider_id, llm_name="echo"))).llm.llm_id

        late = await model_on(f"http://127.0.0.1:{down_port}/v1/chat/completions")
        ready = await model_on(suite.provider.openai_url)
        user = (await final(user_create=pb.UserCreate(username="orderly"))).user.user_id
        chat = (await final(chat_create=pb.ChatCreate(title="order", user_ids=[user]))).chat.chat.chat_id

        def generate(llm_id: str, text: str):
            return asyncio.ensure_future(final(llm_response_generate=pb.LlmResponseGenerate(
                user_id=user, chat_id=chat, llm_id=llm_id, user_input=text)))

        first = generate(late, "first")
        await asyncio.sleep(0.3)
        second = generate(ready, "second")
        await asyncio.sleep(2)  # the first waits its outage out; the second waits for the first
        assert not first.done() and not second.done()
        provider = LlmServer(port=down_port)
        await provider.start()
        try:
            results = [await first, await second]
        finally:
            await provider.stop()
        assert [result.status.code for result in results] == [0, 0]
        loaded = await final(chat_load=pb.ChatLoad(chat_id=chat))
    assert [message.content for message in loaded.chat.messages] == ["first", "echo: first", "second", "echo: second"]
