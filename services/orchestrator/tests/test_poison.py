"""Poison never wedges: every body that is no instruction ends answered, dead-lettered and acknowledged.

The orchestrator here takes 8 messages at a time: a body that held its delivery unsettled would
hold one of those 8 slots for good, and 300 of them would stop it. After them a valid instruction
must still be answered and the queue must be empty.
"""

import json

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services.common.limits import MAX_INSTRUCTION_BODY_BYTES, PROTOBUF

SLOTS = 8


def user_create(username) -> bytes:
    return json.dumps({"type": "USER_CREATE", "data": {"username": username}}).encode()


# Name -> (body, content type). Each is sent 20 times: 15 kinds, 300 messages.
POISON = {
    "deep array": (b"[" * 100_000 + b"]" * 100_000, None),
    "deep object": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, None),
    "deep inside data": (b'{"type": "USER_CREATE", "data": {"username": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}", None),
    "lone surrogate value": (b'{"type": "USER_CREATE", "data": {"username": "\\ud800"}}', None),
    "lone surrogate type": (b'{"type": "\\udfff", "data": {}}', None),
    "lone surrogate key": (b'{"type": "USER_CREATE", "data": {"\\ud800": "x"}}', None),
    "invalid utf-8": (b'{"type": "USER_CREATE", "data": {"username": "\xff\xfe"}}', None),
    "too large": (b'{"type": "USER_CREATE", "data": {"username": "' + b"x" * MAX_INSTRUCTION_BODY_BYTES + b'"}}', None),
    "empty": (b"", None),
    "number too long": (b'{"type": "LLM_ADD", "data": {"provider_id": "p", "llm_name": "m", "context_max_messages": '
                        + b"9" * 10_000 + b"}}", None),
    "not a number": (b'{"type": "USER_LIST", "data": {"page_size": NaN}}', None),
    "wrong shapes": (json.dumps({"type": ["USER_CREATE"], "data": "x"}).encode(), None),
    "protobuf garbage": (b"\xff" * 64, PROTOBUF),
    "protobuf deep": (b"\x0a\x02" * 20_000, PROTOBUF),
    "protobuf bad utf-8": (pb.Instruction(user_get=pb.UserGet(user_id="x")).SerializeToString().replace(b"x", b"\xff"),
                           PROTOBUF),
}


async def test_300_poison_bodies_are_each_answered_and_dead_lettered_and_the_next_instruction_runs(
        suite, orchestrators, amqp_url, queue_name, legacy, blocking_call):
    server = await orchestrators(suite, amqp_url, max_in_flight=SLOTS)
    client = await blocking_call(legacy)
    sent = {}
    for round_ in range(20):
        for name, (body, content_type) in POISON.items():
            sent[await blocking_call(client.publish, body, content_type=content_type, message_id=f"{name}/{round_}")] = name
    valid = await blocking_call(client.publish, user_create("after_the_poison"))

    replies = await blocking_call(client.wait, [*sent, valid], lambda body: True, 120)

    assert json.loads(replies[valid][0])["status"] == "success"
    for correlation_id, name in sent.items():
        [body] = replies[correlation_id]
        if POISON[name][1] == PROTOBUF:
            status = pb.Result.FromString(body).status
            assert status.code == 3 and status.message, (name, status)
        else:
            reply = json.loads(body)
            assert reply["status"] == "error" and reply["message"], (name, reply)
    dead = await blocking_call(client.take_all, server.transport.dead_letter_queue)
    assert sorted(props.message_id for props, _ in dead) == sorted(f"{name}/{r}" for name in POISON for r in range(20))
    assert await blocking_call(client.message_count, queue_name) == 0
    assert [user.username for user in await suite.users()] == ["after_the_poison"]


async def test_a_dead_letter_keeps_no_provider_key(suite, orchestrators, amqp_url, legacy, blocking_call):
    """A provider instruction that is refused is kept on the dead-letter queue without its key,
    in JSON (parsed or not) and in protobuf."""
    server = await orchestrators(suite, amqp_url)
    client = await blocking_call(legacy)
    canary = "sk-canary-0123456789"
    bodies = [
        (json.dumps({"type": "LLM_PROVIDER_ADD", "data": {"name": 5, "api_endpoint": "x", "api_key": canary}}).encode(),
         None),
        (b'{"type": "LLM_PROVIDER_UPDATE", "data": {"api_key" : "' + canary.encode() + b'", "provider_id": ', None),
        (pb.Instruction(llm_provider_add=pb.LlmProviderAdd(name="x" * 1000, api_endpoint="http://h/v1", api_key=canary),
                        instruction_id="i" * 200).SerializeToString(), PROTOBUF),
    ]
    sent = [await blocking_call(client.publish, body, content_type=content_type) for body, content_type in bodies]
    await blocking_call(client.wait, sent, lambda body: True, 60)

    dead = await blocking_call(client.take_all, server.transport.dead_letter_queue)
    assert len(dead) == len(bodies)
    assert all(canary.encode() not in body and b"[redacted]" in body for _, body in dead)
