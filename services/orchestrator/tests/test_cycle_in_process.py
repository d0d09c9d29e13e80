"""The cycle on the embedded in-process queue (no RabbitMQ): CRUD, a streamed generation, chat order."""

import asyncio
import json
import logging

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.pipeline.chains import Chains
from services.orchestrator.queue.transport import Message

REPLIES = "test-replies"


async def test_chains_keep_one_keys_order_and_overlap_other_keys():
    events = []
    gate = asyncio.Event()

    async def work(name, wait=False):
        events.append(f"start {name}")
        if wait:
            await gate.wait()
        events.append(f"end {name}")

    chains = Chains()
    tasks = [chains.run("chat-1", lambda: work("a1", wait=True)), chains.run("chat-1", lambda: work("a2")),
             chains.run("chat-2", lambda: work("b1")), chains.run("", lambda: work("free"))]
    await asyncio.wait(tasks[2:])
    assert "end b1" in events and "end free" in events and "start a2" not in events  # a2 waits for a1 only
    gate.set()
    await asyncio.gather(*tasks)
    assert events.index("end a1") < events.index("start a2")


async def test_without_a_broker_the_same_cycle_runs_crud_and_a_generation(suite, orchestrators, submit_stub, submit):
    server = await orchestrators(suite, amqp_url=None)
    async with submit_stub(server) as stub:
        [accepted, created] = await submit(stub, pb.Instruction(user_create=pb.UserCreate(username="Ada")))
        assert accepted.sequence == 0 and accepted.HasField("accepted")
        assert created.final and created.status.code == 0 and created.user.username == "ada"
        user_id = created.user.user_id
        chat_id, llm_id = await _chat_with_echo(stub, submit, suite, user_id)
        events = await submit(stub, pb.Instruction(llm_response_generate=pb.LlmResponseGenerate(
            user_id=user_id, chat_id=chat_id, llm_id=llm_id, user_input="hello there")))

    final = events[-1]
    assert final.final and final.status.code == 0
    assert final.llm_response.message.content == "echo: hello there"
    deltas = [e for e in events[1:-1] if e.HasField("delta")]
    assert deltas and "".join(d.delta.content for d in deltas) == "echo: hello there"
    assert [e.sequence for e in events] == list(range(len(events)))

    # A legacy JSON message on the in-process queue, answered on the reply queue it names.
    server.transport.publish_nowait(server.transport.queue, Message(
        body=json.dumps({"type": "USER_LIST", "data": {}}).encode(), reply_to=REPLIES, correlation_id="c-1"))
    reply = await asyncio.wait_for(server.transport.queue_named(REPLIES).get(), 60)
    assert reply.correlation_id == "c-1"
    body = json.loads(reply.body)
    assert body["status"] == "success" and [u["username"] for u in body["data"]["users"]] == ["ada"]


async def test_instructions_on_one_chat_apply_in_the_order_they_were_queued(suite, orchestrators, submit_stub, submit):
    server = await orchestrators(suite, amqp_url=None)
    async with submit_stub(server) as stub:
        user_id = (await submit(stub, pb.Instruction(user_create=pb.UserCreate(username="ada"))))[-1].user.user_id
        chat_id = (await submit(stub, pb.Instruction(chat_create=pb.ChatCreate(
            title="t", user_ids=[user_id]))))[-1].chat.chat.chat_id
        provider_id = (await submit(stub, pb.Instruction(llm_provider_add=pb.LlmProviderAdd(
            name="p", api_endpoint=suite.provider.openai_url))))[-1].provider.provider_id
        # The later the message, the faster its model answers: only serialisation keeps the order.
        llm_ids = [(await submit(stub, pb.Instruction(llm_add=pb.LlmAdd(
            provider_id=provider_id, llm_name=f"m{i}@latency_ms={200 - 40 * i}"))))[-1].llm.llm_id for i in range(5)]

    for i, llm_id in enumerate(llm_ids):
        server.transport.publish_nowait(server.transport.queue, Message(
            body=pb.Instruction(llm_response_generate=pb.LlmResponseGenerate(
                user_id=user_id, chat_id=chat_id, llm_id=llm_id, user_input=f"turn {i}")).SerializeToString(),
            content_type="application/x-protobuf", reply_to=REPLIES, correlation_id=f"g{i}"))
    replies = server.transport.queue_named(REPLIES)
    finals = 0
    while finals < 5:
        finals += pb.Result.FromString((await asyncio.wait_for(replies.get(), 60)).body).final

    async with submit_stub(server) as stub:
        loaded = (await submit(stub, pb.Instruction(chat_load=pb.ChatLoad(chat_id=chat_id))))[-1]
    contents = [m.content for m in loaded.chat.messages]
    assert contents == [text for i in range(5) for text in (f"turn {i}", f"echo: turn {i}")]


async def test_every_settle_is_logged_at_debug_with_its_instruction_id(suite, orchestrators, submit_stub, submit,
                                                                        caplog):
    caplog.set_level(logging.DEBUG, logger="services.orchestrator.pipeline.redelivery")
    server = await orchestrators(suite, amqp_url=None)
    async with submit_stub(server) as stub:
        await submit(stub, pb.Instruction(instruction_id="settle-me", user_list=pb.UserList()))
    server.transport.publish_nowait(server.transport.queue, Message(body=b"not json", message_id="poison-1"))
    for _ in range(100):
        if "poison-1" in caplog.text:
            break
        await asyncio.sleep(0.05)
    settles = [record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG]
    assert "answered, acked: message settle-me, instruction settle-me" in settles
    assert "refused as poison, dead-lettered, acked: message poison-1, instruction poison-1" in settles


async def test_a_generation_sent_again_is_answered_from_the_ledger_though_its_lookup_ran_alongside_its_reads(
        suite, orchestrators, submit_stub, submit):
    """A generation's ledger lookup runs while its handler reads (catalog.LOOKED_UP_ALONGSIDE); the
    same id again finds the stored result before any effect: no second provider call, one turn."""
    server = await orchestrators(suite, amqp_url=None)
    async with submit_stub(server) as stub:
        user_id = (await submit(stub, pb.Instruction(user_create=pb.UserCreate(username="twice"))))[-1].user.user_id
        chat_id, llm_id = await _chat_with_echo(stub, submit, suite, user_id)
        generation = pb.Instruction(instruction_id="generate-once", llm_response_generate=pb.LlmResponseGenerate(
            user_id=user_id, chat_id=chat_id, llm_id=llm_id, user_input="only once"))
        asked_before = len(suite.provider.requests)

        first = (await submit(stub, generation))[-1]
        again = (await submit(stub, generation))[-1]
        loaded = (await submit(stub, pb.Instruction(chat_load=pb.ChatLoad(chat_id=chat_id))))[-1]

    assert first.status.code == 0 and again.llm_response.message.message_id == first.llm_response.message.message_id
    assert len(suite.provider.requests) == asked_before + 1
    assert [message.content for message in loaded.chat.messages] == ["only once", "echo: only once"]


async def _chat_with_echo(stub, submit, suite, user_id: str) -> tuple[str, str]:
    """A chat of the user, and an echo model on the stand-in provider: (chat id, llm id)."""
    chat = (await submit(stub, pb.Instruction(chat_create=pb.ChatCreate(title="t", user_ids=[user_id]))))[-1]
    provider = (await submit(stub, pb.Instruction(llm_provider_add=pb.LlmProviderAdd(
        name="stand-in", api_endpoint=suite.provider.openai_url))))[-1]
    llm = (await submit(stub, pb.Instruction(llm_add=pb.LlmAdd(
        provider_id=provider.provider.provider_id, llm_name="echo"))))[-1]
    return chat.chat.chat.chat_id, llm.llm.llm_id
