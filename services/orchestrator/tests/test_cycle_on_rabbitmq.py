"""The cycle on real RabbitMQ: the ledger answers repeats, poison is dead-lettered, a lost broker
connection loses nothing, and many generations run at once."""

import asyncio
import json

import pika
import pytest

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services.common.limits import PROTOBUF
from services.orchestrator.queue.transport import DELIVERY_COUNT_HEADER, FAILURE_HEADER, FAILURE_REASON_HEADER, MAX_DELIVERIES, PERSISTENT


def created_user_ids(bodies: list[bytes]) -> set[str]:
    replies = [json.loads(body) for body in bodies]
    assert all(reply["status"] == "success" for reply in replies), replies
    return {reply["data"]["user"]["user_id"] for reply in replies}


async def test_a_repeated_message_id_is_answered_from_the_ledger_not_executed_again(
        suite, orchestrators, amqp_url, legacy, blocking_call):
    await orchestrators(suite, amqp_url)
    client = await blocking_call(legacy)
    first = await blocking_call(client.send, "USER_CREATE", {"username": "ada"}, message_id="create-ada")
    await blocking_call(client.wait, [first])
    second = await blocking_call(client.send, "USER_CREATE", {"username": "ada"}, message_id="create-ada")
    replies = await blocking_call(client.wait, [first, second])

    assert created_user_ids(replies[first]) == created_user_ids(replies[second])
    assert json.loads(replies[first][0]) == json.loads(replies[second][0])
    assert [user.username for user in await suite.users()] == ["ada"]


async def test_poison_messages_are_dead_lettered_and_others_keep_flowing(
        suite, orchestrators, amqp_url, queue_name, legacy, blocking_call):
    server = await orchestrators(suite, amqp_url)
    client = await blocking_call(legacy)
    poison = {
        "not json": (b"{{{ not json", None),
        "unknown type": (json.dumps({"type": "USER_TELEPORT", "data": {}}).encode(), None),
        "wrong field type": (json.dumps({"type": "USER_CREATE", "data": {"username": 5}}).encode(), None),
        "not protobuf": (b"\xff\xff\xff\xff", PROTOBUF),
    }
    sent, good = {}, []
    for index, (name, (body, content_type)) in enumerate(poison.items()):
        sent[await blocking_call(client.publish, body, content_type=content_type, message_id=name)] = name
        good.append(await blocking_call(client.send, "USER_CREATE", {"username": f"user_{index}"}))
    replies = await blocking_call(client.wait, list(sent) + good)

    assert len(created_user_ids([body for g in good for body in replies[g]])) == len(good)
    for correlation_id, name in sent.items():
        [body] = replies[correlation_id]
        if name == "not protobuf":  # answered in the request's encoding
            status = pb.Result.FromString(body).status
            assert (status.code, status.reason) == (3, "MALFORMED_INSTRUCTION")
        else:
            reply = json.loads(body)
            assert reply["status"] == "error" and reply["message"] and reply["data"] == {}

    dead = await blocking_call(client.take_all, server.transport.dead_letter_queue)
    assert {props.message_id for props, _ in dead} == set(poison)
    for props, body in dead:
        assert body == poison[props.message_id][0]
        assert props.headers[FAILURE_REASON_HEADER] and props.headers[FAILURE_HEADER]
        assert props.delivery_mode == PERSISTENT
    assert await blocking_call(client.message_count, queue_name) == 0


async def test_a_message_that_keeps_killing_its_worker_is_dead_lettered_at_the_limit(
        suite, orchestrators, amqp_url, queue_name, legacy, blocking_call):
    client = await blocking_call(legacy)
    body = json.dumps({"type": "USER_CREATE", "data": {"username": "doomed"}}).encode()

    def deliver_and_die() -> str:
        """Publish it as already delivered MAX-1 times, then take it and drop the connection
        without an ack, as a worker that crashed on it would."""
        correlation_id = client.publish(body, headers={DELIVERY_COUNT_HEADER: MAX_DELIVERIES - 1})
        worker = pika.BlockingConnection(pika.URLParameters(amqp_url))
        method = None
        while method is None:
            method, _props, _body = worker.channel().basic_get(queue_name, auto_ack=False)
        worker.close()
        return correlation_id

    correlation_id = await blocking_call(deliver_and_die)
    server = await orchestrators(suite, amqp_url)
    reply = json.loads((await blocking_call(client.wait, [correlation_id]))[correlation_id][0])
    assert reply["status"] == "error" and "5 deliveries" in reply["message"]
    [(props, dead_body)] = await blocking_call(client.take_all, server.transport.dead_letter_queue)
    assert dead_body == body and props.headers[FAILURE_REASON_HEADER] == "DELIVERY_LIMIT_REACHED"
    assert await suite.users() == []


async def test_losing_the_broker_connection_loses_nothing_and_applies_nothing_twice(
        suite, orchestrators, proxy, legacy, blocking_call):
    await orchestrators(suite, proxy.url)
    client = await blocking_call(legacy)
    ids = [await blocking_call(client.send, "USER_CREATE", {"username": f"user_{i:03d}"}, message_id=f"create-{i}")
           for i in range(200)]
    await blocking_call(client.wait_for_replies, 20)
    proxy.cut()  # mid-flight: some replies published, some results stored, acks lost
    replies = await blocking_call(client.wait, ids, timeout=110)

    for correlation_id in ids:
        assert len(created_user_ids(replies[correlation_id])) == 1  # repeats carry the same user
    assert sorted(user.username for user in await suite.users()) == [f"user_{i:03d}" for i in range(200)]


async def test_sixty_four_generations_run_at_once(suite, orchestrators, amqp_url, legacy, blocking_call):
    await orchestrators(suite, amqp_url)
    client = await blocking_call(legacy)
    user_id = (await blocking_call(client.call, "USER_CREATE", {"username": "ada"}))["data"]["user"]["user_id"]
    provider = await blocking_call(client.call, "LLM_PROVIDER_ADD", {
        "name": "slow", "api_endpoint": suite.provider.openai_url, "api_key": None})
    provider_id = provider["data"]["provider"]["provider_id"]
    llm_id = (await blocking_call(client.call, "LLM_ADD", {
        "provider_id": provider_id, "llm_name": "slow@latency_ms=500"}))["data"]["llm"]["llm_id"]
    chat_calls = [await blocking_call(client.send, "CHAT_CREATE", {"title": f"c{i}", "user_ids": [user_id]})
                  for i in range(64)]
    chats = await blocking_call(client.wait, chat_calls)
    chat_ids = [json.loads(chats[c][0])["data"]["chat"]["chat_id"] for c in chat_calls]

    most_at_once = 0

    async def watch_provider():
        nonlocal most_at_once
        while True:
            most_at_once = max(most_at_once, suite.provider.stats.in_flight)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch_provider())
    generations = [await blocking_call(client.send, "LLM_RESPONSE_GENERATE", {
        "user_id": user_id, "chat_id": chat_id, "provider_id": provider_id, "llm_id": llm_id,
        "user_input": f"question {i}"}) for i, chat_id in enumerate(chat_ids)]
    replies = await blocking_call(client.wait, generations)
    watcher.cancel()

    for i, correlation_id in enumerate(generations):
        reply = json.loads(replies[correlation_id][0])
        assert reply["status"] == "success", reply
        assert reply["data"]["llm_response"]["content"] == f"echo: question {i}"
    assert suite.provider.stats.completed >= 64
    # One at a time would show 1. How many overlap depends on how fast this one process (units,
    # orchestrator and provider share its GIL) gets the 64 through their first steps.
    assert most_at_once >= 8, f"at most {most_at_once} provider calls overlapped"


@pytest.mark.parametrize("content_type", [
    "application/x-protobuf", "application/protobuf", "Application/Protobuf; proto=llmchatlinker.orchestrator.v1.Instruction",
])
async def test_every_protobuf_media_type_is_answered_in_protobuf_with_its_deltas(
        suite, orchestrators, amqp_url, legacy, blocking_call, content_type):
    await orchestrators(suite, amqp_url)
    client = await blocking_call(legacy)
    ada = (await blocking_call(client.call, "USER_CREATE", {"username": "ada"}))["data"]["user"]["user_id"]
    chat_id = (await blocking_call(client.call, "CHAT_CREATE", {"title": "t", "user_ids": [ada]}))["data"]["chat"]["chat_id"]
    provider = (await blocking_call(client.call, "LLM_PROVIDER_ADD", {
        "name": "stand-in", "api_endpoint": suite.provider.openai_url}))["data"]["provider"]["provider_id"]
    llm_id = (await blocking_call(client.call, "LLM_ADD", {"provider_id": provider, "llm_name": "m"}))["data"]["llm"]["llm_id"]

    results = await blocking_call(client.call_proto, pb.Instruction(llm_response_generate=pb.LlmResponseGenerate(
        user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="three little words")), content_type)

    *deltas, final = results
    assert final.final and final.status.code == 0, final.status
    assert deltas and all(not event.final and event.HasField("delta") for event in deltas)
    assert "".join(event.delta.content for event in deltas) == final.llm_response.message.content
