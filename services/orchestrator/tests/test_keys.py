"""Caller keys at the front door and on the queue: every instruction with no key, a revoked key and
each role, over gRPC and over AMQP (a key header, and the queue's default role)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import grpc
import pytest

from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from services.common import keys
from services.common.errors import error_info
from services.common.limits import PROTOBUF

OK, DENIED, UNAUTHENTICATED = "OK", "PERMISSION_DENIED", "UNAUTHENTICATED"
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def bearer(key: str | None) -> tuple:
    return (("authorization", f"Bearer {key}"),) if key else ()


async def make_key(suite, role: str, user_id: str = "") -> str:
    """A key stored straight on user_unit (as `llmchatlinker keys create --direct` does)."""
    key, key_id = keys.new_key(), keys.new_key_id()
    await suite.channels.users.CreateKey(user_pb2.CreateKeyRequest(
        key_id=key_id, key_hash=keys.key_hash(key), role=role, user_id=user_id, shown_part=keys.shown_part(key)),
        timeout=10)
    return key


async def outcome(stub, instruction: pb.Instruction, key: str | None) -> tuple[str, str, pb.Result | None]:
    """(status name, ErrorInfo reason, final result): the call's own status when the front door
    refused it, else the final result's."""
    try:
        events = [r.result async for r in stub.Submit(pb.SubmitRequest(instruction=instruction),
                                                       metadata=bearer(key), timeout=60)]
    except grpc.aio.AioRpcError as error:
        info = error_info(error)
        return error.code().name, info.reason if info else "", None
    final = events[-1]
    return CODE_NAMES[final.status.code], final.status.reason, final


@dataclasses.dataclass
class World:
    """What the admin made: users u (the user key's) and v, chats c and c2 of u and d of v, a
    provider with two models, an assistant message in c (m) and in d (n)."""

    u: str
    v: str
    c: str
    c2: str
    d: str
    provider: str
    llm: str
    spare_llm: str
    m: str
    n: str


def fresh(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def ok(stub, admin: str, **request) -> pb.Result:
    status, reason, final = await outcome(stub, pb.Instruction(**request), admin)
    assert status == OK, (request, status, reason, final)
    return final


async def build_world(stub, admin: str, suite) -> World:
    u = (await ok(stub, admin, user_create=pb.UserCreate(username=fresh("u")))).user.user_id
    v = (await ok(stub, admin, user_create=pb.UserCreate(username=fresh("v")))).user.user_id
    chat = lambda user: pb.ChatCreate(title="t", user_ids=[user])  # noqa: E731
    c = (await ok(stub, admin, chat_create=chat(u))).chat.chat.chat_id
    c2 = (await ok(stub, admin, chat_create=chat(u))).chat.chat.chat_id
    d = (await ok(stub, admin, chat_create=chat(v))).chat.chat.chat_id
    provider = (await ok(stub, admin, llm_provider_add=pb.LlmProviderAdd(
        name=fresh("p"), api_endpoint=suite.provider.openai_url))).provider.provider_id
    llm = (await ok(stub, admin, llm_add=pb.LlmAdd(provider_id=provider, llm_name="stand-in"))).llm.llm_id
    spare = (await ok(stub, admin, llm_add=pb.LlmAdd(provider_id=provider, llm_name="spare"))).llm.llm_id
    gen = lambda user, chat_id: pb.LlmResponseGenerate(user_id=user, chat_id=chat_id, llm_id=llm, user_input="hi")  # noqa: E731
    m = (await ok(stub, admin, llm_response_generate=gen(u, c))).llm_response.message.message_id
    n = (await ok(stub, admin, llm_response_generate=gen(v, d))).llm_response.message.message_id
    return World(u, v, c, c2, d, provider, llm, spare, m, n)


# Every instruction type, in an order that deletes last: (name, access, the instruction for a world
# and whether it names the user key's own things). Access: "admin" (admin keys only), "app"
# (admin and app), "own" (also a user key, for its own things), "list" (a user key gets its own).
def matrix(w: World, mine: bool) -> list[tuple[str, str, pb.Instruction]]:
    user, chat, message = (w.u, w.c, w.m) if mine else (w.v, w.d, w.n)
    i = pb.Instruction
    return [
        ("USER_CREATE", "app", i(user_create=pb.UserCreate(username=fresh("n")))),
        ("USER_GET", "own", i(user_get=pb.UserGet(user_id=user))),
        ("USER_UPDATE", "own", i(user_update=pb.UserUpdate(user_id=user, profile="p"))),
        ("USER_LIST", "list", i(user_list=pb.UserList())),
        ("USER_INSTRUCTION_RECORDING_ENABLE", "own",
         i(user_instruction_recording_enable=pb.UserInstructionRecordingEnable(user_id=user))),
        ("USER_INSTRUCTION_RECORDING_DISABLE", "own",
         i(user_instruction_recording_disable=pb.UserInstructionRecordingDisable(user_id=user))),
        ("USER_INSTRUCTION_RECORDS_LIST", "own",
         i(user_instruction_records_list=pb.UserInstructionRecordsList(user_id=user))),
        ("USER_INSTRUCTION_RECORDS_DELETE", "own",
         i(user_instruction_records_delete=pb.UserInstructionRecordsDelete(user_id=user))),
        ("CHAT_CREATE", "own", i(chat_create=pb.ChatCreate(title="mine", user_ids=[user]))),
        ("CHAT_UPDATE", "own", i(chat_update=pb.ChatUpdate(chat_id=chat, title="new"))),
        ("CHAT_LOAD", "own", i(chat_load=pb.ChatLoad(chat_id=chat))),
        ("CHAT_LIST", "list", i(chat_list=pb.ChatList())),
        ("CHAT_LIST_BY_USER", "own", i(chat_list_by_user=pb.ChatListByUser(user_id=user))),
        ("LLM_RESPONSE_GENERATE", "own", i(llm_response_generate=pb.LlmResponseGenerate(
            user_id=user, chat_id=chat, llm_id=w.llm, user_input="hello"))),
        ("LLM_RESPONSE_REGENERATE", "own", i(llm_response_regenerate=pb.LlmResponseRegenerate(
            message_id=message, user_id=user))),
        ("LLM_PROVIDER_LIST", "app", i(llm_provider_list=pb.LlmProviderList())),
        ("LLM_LIST", "app", i(llm_list=pb.LlmList())),
        ("LLM_LIST_BY_PROVIDER", "app", i(llm_list_by_provider=pb.LlmListByProvider(provider_id=w.provider))),
        ("USAGE_LIST", "app", i(usage_list=pb.UsageList(group_by=llm_pb2.USAGE_GROUPING_LLM))),
        ("USER_LIMITS_SET", "admin", i(user_limits_set=pb.UserLimitsSet(user_id=user, requests_per_minute=1000))),
        ("USER_LIMITS_GET", "own", i(user_limits_get=pb.UserLimitsGet(user_id=user))),
        ("LLM_PROVIDER_ADD", "admin", i(llm_provider_add=pb.LlmProviderAdd(name=fresh("q"),
                                                                           api_endpoint="http://127.0.0.1:9/x"))),
        ("LLM_PROVIDER_UPDATE", "admin", i(llm_provider_update=pb.LlmProviderUpdate(provider_id=w.provider,
                                                                                    name=fresh("r")))),
        ("LLM_ADD", "admin", i(llm_add=pb.LlmAdd(provider_id=w.provider, llm_name=fresh("m")))),
        ("LLM_UPDATE", "admin", i(llm_update=pb.LlmUpdate(llm_id=w.spare_llm, llm_name=fresh("s")))),
        ("LLM_DELETE", "admin", i(llm_delete=pb.LlmDelete(llm_id=w.spare_llm))),
        ("CHAT_DELETE", "own", i(chat_delete=pb.ChatDelete(chat_id=w.c2 if mine else w.d))),
        ("LLM_PROVIDER_DELETE", "admin", i(llm_provider_delete=pb.LlmProviderDelete(provider_id=w.provider))),
        ("USER_DELETE", "own", i(user_delete=pb.UserDelete(user_id=user))),
    ]


def test_the_matrix_has_every_instruction_type():
    oneof = pb.Instruction.DESCRIPTOR.oneofs_by_name["instruction"]
    assert [inst.WhichOneof("instruction") for _, _, inst in matrix(World(*("x",) * 10), True)] \
        == sorted({field.name for field in oneof.fields}, key=[
            inst.WhichOneof("instruction") for _, _, inst in matrix(World(*("x",) * 10), True)].index)
    assert len(matrix(World(*("x",) * 10), True)) == len(oneof.fields)


def expected(role: str, access: str, mine: bool) -> str:
    if role in ("", "revoked"):
        return UNAUTHENTICATED
    if role == "admin":
        return OK
    if role == "app":
        return DENIED if access == "admin" else OK
    return OK if access == "list" or (access == "own" and mine) else DENIED


@pytest.fixture
async def keyed(suite, orchestrators, submit_stub):
    """An orchestrator requiring keys (in-process queue), an admin key and a front-door stub."""
    front_door = submit_stub
    server = await orchestrators(suite, None, auth="keys")
    admin = await make_key(suite, "admin")
    async with front_door(server) as stub:
        yield server, stub, admin


@pytest.mark.parametrize("role", ["", "revoked", "admin", "app", "user"])
async def test_every_instruction_over_grpc_is_allowed_or_refused_by_the_callers_role(suite, keyed, role):
    _, stub, admin = keyed
    w = await build_world(stub, admin, suite)
    key = None
    if role == "revoked":
        key = await make_key(suite, "app")
        listed = await stub.ListKeys(pb.ListKeysRequest(page_size=1000), metadata=bearer(admin), timeout=10)
        revoked = next(k for k in listed.keys if k.shown_part == key[:8])
        await stub.RevokeKey(pb.RevokeKeyRequest(key_id=revoked.key_id), metadata=bearer(admin), timeout=10)
    elif role:
        key = await make_key(suite, role, w.u if role == "user" else "")
    cases = [(name, access, inst, True) for name, access, inst in matrix(w, True)]
    if role == "user":  # the user key on what is not its own: refused, before its own deletes
        cases = [(name, access, inst, False) for name, access, inst in matrix(w, False)
                 if access != "list"] + cases
    seen = []
    for name, access, instruction, mine in cases:
        status, reason, final = await outcome(stub, instruction, key)
        seen.append((name, mine, status))
        want = expected(role, access, mine)
        assert status == want, (name, mine, status, reason, final and final.status.message)
        if want == DENIED:
            assert reason in ("ROLE_NOT_PERMITTED", "NOT_OWN")
        if role == "user" and status == OK and name == "USER_LIST":
            assert [user.user_id for user in final.users.users] == [w.u]
        if role == "user" and status == OK and name == "CHAT_LIST":
            assert {chat.chat_id for chat in final.chats.chats} <= {w.c, w.c2} | {
                chat.chat_id for chat in final.chats.chats if w.u in chat.user_ids}
            assert w.d not in {chat.chat_id for chat in final.chats.chats}
    assert len({name for name, _, _ in seen}) == len(pb.Instruction.DESCRIPTOR.oneofs_by_name["instruction"].fields)


async def test_a_user_key_hears_the_same_for_a_chat_that_is_not_its_own_and_one_that_does_not_exist(suite, keyed):
    _, stub, admin = keyed
    w = await build_world(stub, admin, suite)
    user_key = await make_key(suite, "user", w.u)
    answers = []
    for chat_id in (w.d, "no-such-chat", str(uuid.uuid4())):
        status, reason, final = await outcome(stub, pb.Instruction(chat_load=pb.ChatLoad(chat_id=chat_id)), user_key)
        answers.append((status, reason, final.status.message))
    for message_id in (w.n, str(uuid.uuid4())):
        status, reason, final = await outcome(stub, pb.Instruction(llm_response_regenerate=pb.LlmResponseRegenerate(
            message_id=message_id, user_id=w.u)), user_key)
        answers.append((status, reason, final.status.message.replace("LLM_RESPONSE_REGENERATE", "CHAT_LOAD")))
    status, reason, final = await outcome(stub, pb.Instruction(user_get=pb.UserGet(username="nobody_here")), user_key)
    assert (status, reason) == (DENIED, "NOT_OWN")
    assert len(set(answers)) == 1 and answers[0][:2] == (DENIED, "NOT_OWN")


async def test_admin_rpcs_are_for_admin_keys_only_and_a_key_is_shown_once(suite, keyed):
    _, stub, admin = keyed
    app = await make_key(suite, "app")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateKey(pb.CreateKeyRequest(role="admin"), metadata=bearer(app), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListKeys(pb.ListKeysRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "KEY_MISSING"

    made = await stub.CreateKey(pb.CreateKeyRequest(role="app", name="front-end"), metadata=bearer(admin), timeout=10)
    assert made.api_key.startswith("lcl_") and made.key.shown_part == made.api_key[:8]
    listed = await stub.ListKeys(pb.ListKeysRequest(), metadata=bearer(admin), timeout=10)
    assert made.key.key_id in [key.key_id for key in listed.keys]
    assert made.api_key not in str(listed)
    status, _, _ = await outcome(stub, pb.Instruction(user_list=pb.UserList()), made.api_key)
    assert status == OK


async def test_a_revoked_key_is_refused_by_every_replica_within_a_second(suite, orchestrators, submit_stub):
    front_door = submit_stub
    first = await orchestrators(suite, None, auth="keys")
    second = await orchestrators(suite, None, auth="keys")
    admin, app = await make_key(suite, "admin"), await make_key(suite, "app")
    async with front_door(first) as one, front_door(second) as two:
        assert (await outcome(two, pb.Instruction(user_list=pb.UserList()), app))[0] == OK  # kept by `two` now
        listed = await one.ListKeys(pb.ListKeysRequest(), metadata=bearer(admin), timeout=10)
        key_id = next(k.key_id for k in listed.keys if k.shown_part == app[:8])
        await one.RevokeKey(pb.RevokeKeyRequest(key_id=key_id), metadata=bearer(admin), timeout=10)
        revoked_at = asyncio.get_running_loop().time()
        assert (await outcome(one, pb.Instruction(user_list=pb.UserList()), app))[:2] == (UNAUTHENTICATED,
                                                                                             "KEY_INVALID")
        # `two` may still take the key as it was when it last looked, but not past a second after.
        await asyncio.sleep(max(0.0, revoked_at + 1.05 - asyncio.get_running_loop().time()))
        assert (await outcome(two, pb.Instruction(user_list=pb.UserList()), app))[:2] == (UNAUTHENTICATED,
                                                                                             "KEY_INVALID")


# ---- instruction ids belong to their caller ----

async def test_another_callers_id_gets_neither_the_result_nor_a_rerun_of_it(suite, keyed):
    _, stub, admin = keyed
    alice, mallory, eve = [await make_key(suite, "app") for _ in range(3)]
    create = pb.Instruction(instruction_id="shared-id", user_create=pb.UserCreate(username=fresh("ada")))
    status, _, first = await outcome(stub, create, alice)
    assert status == OK
    status, _, same = await outcome(stub, create, mallory)  # the very same request: a run of its own
    assert (status, same.status.reason) == ("ALREADY_EXISTS", "USERNAME_TAKEN")
    replay = pb.Instruction(instruction_id="shared-id", user_list=pb.UserList())
    status, _, theirs = await outcome(stub, replay, eve)
    assert status == OK and theirs.WhichOneof("payload") == "users"  # its own run, not alice's result
    status, _, again = await outcome(stub, create, alice)
    assert status == OK and again.user == first.user  # alice's own id still answers from her result


async def test_an_id_sent_again_with_another_request_is_already_exists(suite, keyed):
    _, stub, admin = keyed
    first = pb.Instruction(instruction_id="once", user_create=pb.UserCreate(username=fresh("bo")))
    assert (await outcome(stub, first, admin))[0] == OK
    other = pb.Instruction(instruction_id="once", chat_create=pb.ChatCreate(title="not that request"))
    status, reason, final = await outcome(stub, other, admin)
    assert (status, reason) == ("ALREADY_EXISTS", "INSTRUCTION_ID_REUSED")
    assert "once" in final.status.message and "CHAT_CREATE" in final.status.message
    # A read keeps nothing and looks nothing up: under a used id it reads, and answers for itself.
    read = pb.Instruction(instruction_id="once", user_list=pb.UserList())
    status, _, listed = await outcome(stub, read, admin)
    assert status == OK and listed.WhichOneof("payload") == "users"


async def test_another_callers_id_never_joins_its_live_stream(suite, keyed, eventually):
    _, stub, admin = keyed
    w = await build_world(stub, admin, suite)
    slow = (await ok(stub, admin, llm_add=pb.LlmAdd(provider_id=w.provider,
                                                    llm_name="paced@tokens=40,interval_ms=50"))).llm.llm_id
    alice, mallory = await make_key(suite, "app"), await make_key(suite, "app")
    generate = pb.Instruction(instruction_id="gen-1", llm_response_generate=pb.LlmResponseGenerate(
        user_id=w.u, chat_id=w.c, llm_id=slow, user_input="tell me"))
    theirs = asyncio.ensure_future(outcome(stub, generate, alice))
    await eventually(lambda: suite.provider.stats.in_flight > 0, what="alice's generation streaming")
    mine = [r.result async for r in stub.Submit(pb.SubmitRequest(instruction=pb.Instruction(
        instruction_id="gen-1", user_list=pb.UserList())), metadata=bearer(mallory), timeout=60)]
    assert not any(event.HasField("delta") for event in mine)
    assert mine[-1].WhichOneof("payload") == "users"
    assert (await theirs)[0] == OK


# ---- the legacy AMQP path ----

async def publish_and_wait(legacy_client, instruction: pb.Instruction, key: str | None) -> tuple[str, str]:
    def call():
        correlation_id = legacy_client.publish(instruction.SerializeToString(), content_type=PROTOBUF,
                                               headers={"authorization": f"Bearer {key}"} if key else None)
        bodies = legacy_client.wait([correlation_id], final=lambda b: pb.Result.FromString(b).final)
        return pb.Result.FromString(bodies[correlation_id][-1])

    final = await asyncio.to_thread(call)
    return CODE_NAMES[final.status.code], final.status.reason


@pytest.mark.parametrize("role", ["default", "revoked", "admin", "app", "user"])
async def test_every_instruction_over_amqp_is_allowed_or_refused_by_the_key_header_or_the_queue_role(
        suite, orchestrators, amqp_url, legacy, submit_stub, role):
    front_door = submit_stub
    server = await orchestrators(suite, amqp_url, auth="keys")
    admin = await make_key(suite, "admin")
    client = legacy()
    async with front_door(server) as stub:
        w = await build_world(stub, admin, suite)
    key = None
    if role == "revoked":
        key = await make_key(suite, "app")
        stored = (await suite.channels.users.VerifyKeys(user_pb2.VerifyKeysRequest(
            key_hashes=[keys.key_hash(key)]), timeout=10)).keys[0].key
        await suite.channels.users.RevokeKey(user_pb2.RevokeKeyRequest(key_id=stored.key_id), timeout=10)
    elif role != "default":
        key = await make_key(suite, role, w.u if role == "user" else "")
    as_role = {"default": "app"}.get(role, role)  # the queue's default role is app
    cases = [(name, access, inst, True) for name, access, inst in matrix(w, True)]
    if role == "user":
        cases = [(name, access, inst, False) for name, access, inst in matrix(w, False)
                 if access != "list"] + cases
    for name, access, instruction, mine in cases:
        status, reason = await publish_and_wait(client, instruction, key)
        assert status == expected(as_role, access, mine), (name, mine, status, reason)


async def test_a_queue_role_of_none_refuses_keyless_messages_and_json_clients_keep_their_replies(
        suite, orchestrators, amqp_url, legacy):
    await orchestrators(suite, amqp_url, auth="keys", queue_role="none")
    client = legacy()
    reply = await asyncio.to_thread(client.call, "USER_LIST", {})
    assert reply["status"] == "error" and reply["data"] == {}
    assert "key" in reply["message"]


# ---- llmchatlinker keys ----

async def test_the_keys_command_makes_the_first_admin_key_directly_then_works_through_the_front_door(
        suite, orchestrators, submit_stub, monkeypatch):
    import argparse
    import io

    from services import admin, cli

    server = await orchestrators(suite, None, auth="keys")

    async def keys_command(*argv: str) -> tuple[int, str, str]:
        args = cli._parser().parse_args(["keys", *argv])
        out, err = io.StringIO(), io.StringIO()
        status = await asyncio.to_thread(admin.run, args, out, err)
        return status, out.getvalue(), err.getvalue()

    assert isinstance(cli._parser(), argparse.ArgumentParser)
    status, first, _ = await keys_command("create", "--role", "admin", "--name", "ops", "--direct",
                                          "--address", suite.address("user_unit"))
    assert status == 0 and first.strip().startswith("lcl_")
    front = f"127.0.0.1:{server.port}"
    status, _, err = await keys_command("list", "--address", front)
    assert status == grpc.StatusCode.UNAUTHENTICATED.value[0] and "KEY_MISSING" in err

    monkeypatch.setenv("LLMCHATLINKER_API_KEY", first.strip())
    status, app_key, err = await keys_command("create", "--role", "app", "--name", "web", "--address", front)
    assert status == 0 and "shown this once" in err
    status, listed, _ = await keys_command("list", "--address", front)
    assert status == 0 and [line.split("\t")[1] for line in listed.splitlines()] == ["admin", "app"]
    app_id = listed.splitlines()[1].split("\t")[0]
    async with submit_stub(server) as stub:
        assert (await outcome(stub, pb.Instruction(user_list=pb.UserList()), app_key.strip()))[0] == OK
        status, _, _ = await keys_command("revoke", app_id, "--address", front)
        assert status == 0
        assert (await outcome(stub, pb.Instruction(user_list=pb.UserList()), app_key.strip()))[0] == UNAUTHENTICATED


async def test_the_clients_send_their_key_from_the_argument_or_the_environment(suite, orchestrators, monkeypatch):
    from llmchatlinker.client import Client, LLMChatLinkerClient, LLMChatLinkerError

    server = await orchestrators(suite, None, auth="keys")
    app = await make_key(suite, "app")
    address = f"127.0.0.1:{server.port}"

    def calls() -> tuple:
        with Client(address, api_key=app) as client:
            listed = client.submit(pb.UserList())
        with Client(address) as client:
            try:
                client.submit(pb.UserList())
                refused = None
            except LLMChatLinkerError as error:
                refused = error.reason
        monkeypatch.setenv("LLMCHATLINKER_API_KEY", app)
        with LLMChatLinkerClient(address=address) as legacy_client:
            reply = legacy_client.list_users()
        return listed.status.code, refused, reply["status"]

    assert await asyncio.to_thread(calls) == (0, "KEY_MISSING", "success")


async def test_over_amqp_another_callers_message_id_gets_its_own_run(suite, orchestrators, amqp_url, legacy):
    await orchestrators(suite, amqp_url, auth="keys")
    alice = await make_key(suite, "app")
    client = legacy()
    username = fresh("amq")

    def send(json_type: str, data: dict, key: str | None) -> dict:
        correlation_id = client.send(json_type, data, message_id="same-message-id",
                                     headers={"authorization": f"Bearer {key}"} if key else None)
        return json.loads(client.wait([correlation_id])[correlation_id][0])

    first = await asyncio.to_thread(send, "USER_CREATE", {"username": username}, alice)
    keyless = await asyncio.to_thread(send, "USER_CREATE", {"username": username}, None)
    again = await asyncio.to_thread(send, "USER_CREATE", {"username": username}, alice)
    other_request = await asyncio.to_thread(send, "CHAT_CREATE", {"title": "another", "user_ids": []}, alice)

    assert first["status"] == "success"
    assert keyless["status"] == "error" and "taken" in keyless["message"]  # its own run, not alice's result
    assert again == first  # alice's own id: her stored result
    assert other_request["status"] == "error" and "another request" in other_request["message"]
