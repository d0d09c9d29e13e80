"""Reads on real RabbitMQ: no ledger round trip before or after, a repeated or redelivered read id
reads again, and a read that kills its worker still ends on the dead-letter queue."""

import json

import pika

from llmchatlinker.db.v1 import db_service_pb2 as db_pb2
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from services.orchestrator.queue.transport import DELIVERY_COUNT_HEADER, FAILURE_REASON_HEADER, MAX_DELIVERIES


async def stored_results(suite, *instruction_ids: str) -> set[str]:
    response = await suite.channels.records.GetResults(
        db_pb2.GetResultsRequest(instruction_ids=list(instruction_ids)), timeout=10)
    return {stored.instruction_id for stored in response.results}


def take_and_die(amqp_url: str, queue: str) -> None:
    """Takes the next message and drops the connection without an ack, as a crashed worker would."""
    worker = pika.BlockingConnection(pika.URLParameters(amqp_url))
    method = None
    while method is None:
        method, _props, _body = worker.channel().basic_get(queue, auto_ack=False)
    worker.close()


async def test_a_repeated_read_id_reads_again_and_nothing_is_kept_for_it(
        suite, orchestrators, amqp_url, legacy, blocking_call):
    await orchestrators(suite, amqp_url)
    client = await blocking_call(legacy)
    ada = (await blocking_call(client.call, "USER_CREATE", {"username": "ada"}))["data"]["user"]
    first = await blocking_call(client.send, "USER_GET", {"user_id": ada["user_id"]}, message_id="read-ada")
    before = json.loads((await blocking_call(client.wait, [first]))[first][0])
    update = await blocking_call(client.send, "USER_UPDATE", {"user_id": ada["user_id"], "profile": "changed"},
                                 message_id="update-ada")
    await blocking_call(client.wait, [update])
    again = await blocking_call(client.send, "USER_GET", {"user_id": ada["user_id"]}, message_id="read-ada")
    after = json.loads((await blocking_call(client.wait, [again]))[again][0])

    assert before["data"]["user"]["profile"] != "changed"
    assert after["status"] == "success" and after["data"]["user"]["profile"] == "changed"
    assert await stored_results(suite, "read-ada", "update-ada") == {"update-ada"}


async def test_a_redelivered_read_is_counted_and_reads_again(
        suite, orchestrators, amqp_url, queue_name, legacy, blocking_call):
    client = await blocking_call(legacy)
    ada = (await suite.channels.users.CreateUser(user_pb2.CreateUserRequest(username="ada"), timeout=10)).user
    correlation_id = await blocking_call(client.send, "USER_GET", {"user_id": ada.user_id}, message_id="read-1")
    await blocking_call(take_and_die, amqp_url, queue_name)
    await orchestrators(suite, amqp_url)
    [body] = (await blocking_call(client.wait, [correlation_id]))[correlation_id]

    reply = json.loads(body)
    assert reply["status"] == "success" and reply["data"]["user"]["user_id"] == ada.user_id
    assert await stored_results(suite, "read-1") == set()


async def test_a_read_that_keeps_killing_its_worker_is_dead_lettered_at_the_limit(
        suite, orchestrators, amqp_url, queue_name, legacy, blocking_call):
    client = await blocking_call(legacy)
    body = json.dumps({"type": "USER_LIST", "data": {}}).encode()
    correlation_id = await blocking_call(client.publish, body, headers={DELIVERY_COUNT_HEADER: MAX_DELIVERIES - 1})
    await blocking_call(take_and_die, amqp_url, queue_name)
    server = await orchestrators(suite, amqp_url)

    reply = json.loads((await blocking_call(client.wait, [correlation_id]))[correlation_id][0])
    assert reply["status"] == "error" and f"{MAX_DELIVERIES} deliveries" in reply["message"]
    [(props, dead_body)] = await blocking_call(client.take_all, server.transport.dead_letter_queue)
    assert dead_body == body and props.headers[FAILURE_REASON_HEADER] == "DELIVERY_LIMIT_REACHED"
