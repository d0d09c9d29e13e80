"""The unit gateways: a model is read once per TTL, concurrent misses share a read, changes are
seen at once; the calls of generations at once are joined into batch calls."""

import asyncio

import grpc
import pytest

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services.common.errors import error_info
from services.orchestrator.units.models import ModelGateway


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLlms:
    """GetLlm of an LLM unit whose models are in `models`; held while `gate` is clear."""

    def __init__(self):
        self.models = {"m1": llm_pb2.Llm(llm_id="m1", provider_id="p1", context_max_messages=50)}
        self.reads: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def GetLlm(self, request, timeout):  # noqa: N802 - the gRPC method's name
        assert timeout
        self.reads.append(request.llm_id)
        await self.gate.wait()
        if request.llm_id not in self.models:
            raise LookupError(f"no model {request.llm_id}")
        answer = llm_pb2.GetLlmResponse()
        answer.llm.CopyFrom(self.models[request.llm_id])
        return answer


@pytest.fixture
def model_gateway():
    llms, clock = FakeLlms(), FakeClock()
    return ModelGateway(llms, ttl_s=2.0, clock=clock), llms, clock


async def test_a_model_is_read_once_while_it_is_fresh(model_gateway):
    models, llms, clock = model_gateway
    assert (await models.model("m1")).provider_id == "p1"
    clock.now += 1.9
    await models.model("m1")
    assert llms.reads == ["m1"]
    clock.now += 0.2
    await models.model("m1")
    assert llms.reads == ["m1", "m1"]


async def test_concurrent_misses_share_one_read(model_gateway):
    models, llms, _ = model_gateway
    llms.gate.clear()
    waiting = [asyncio.ensure_future(models.model("m1")) for _ in range(20)]
    await asyncio.sleep(0.01)
    llms.gate.set()
    assert {model.llm_id for model in await asyncio.gather(*waiting)} == {"m1"}
    assert llms.reads == ["m1"]


async def test_a_change_made_here_is_read_afresh_even_over_a_read_in_flight(model_gateway):
    models, llms, _ = model_gateway
    await models.model("m1")
    llms.gate.clear()
    llms.models["m1"].context_max_messages = 7
    models.models_changed()
    stale = asyncio.ensure_future(models.model("m1"))
    await asyncio.sleep(0.01)
    models.models_changed()  # a second change while that read is in flight: it must not be kept
    fresh = asyncio.ensure_future(models.model("m1"))
    await asyncio.sleep(0.01)
    llms.gate.set()
    await stale
    assert (await fresh).context_max_messages == 7
    assert len(llms.reads) == 3
    await models.model("m1")
    assert len(llms.reads) == 3  # the read begun after the last change is kept


async def test_a_lifetime_of_zero_reads_the_model_every_time_but_still_joins_concurrent_reads():
    llms = FakeLlms()
    models = ModelGateway(llms, ttl_s=0.0, clock=FakeClock())
    await models.model("m1")
    await models.model("m1")
    assert llms.reads == ["m1", "m1"]
    await asyncio.gather(*(models.model("m1") for _ in range(5)))
    assert llms.reads == ["m1", "m1", "m1"]


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept(model_gateway):
    models, llms, _ = model_gateway
    llms.gate.clear()
    waiting = [asyncio.ensure_future(models.model("gone")) for _ in range(3)]
    await asyncio.sleep(0.01)
    llms.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(outcome, LookupError) for outcome in outcomes) and llms.reads == ["gone"]
    llms.models["gone"] = llm_pb2.Llm(llm_id="gone")
    assert (await models.model("gone")).llm_id == "gone"


async def test_one_waiter_cancelled_does_not_cancel_the_others_read(model_gateway):
    models, llms, _ = model_gateway
    llms.gate.clear()
    first, second = asyncio.ensure_future(models.model("m1")), asyncio.ensure_future(models.model("m1"))
    await asyncio.sleep(0.01)
    first.cancel()
    llms.gate.set()
    assert (await second).llm_id == "m1"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_model_changes_through_the_orchestrator_are_seen_by_the_next_generation(units):
    ada = await units.user("ada")
    chat_id = await units.chat(ada)
    _, llm_id = await units.model()
    await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="one")
    updated = await units.run(pb.Instruction(llm_update=pb.LlmUpdate(llm_id=llm_id, context_max_messages=1)))
    assert updated.status.code == 0
    await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="two")
    assert [message["content"] for message in units.provider.requests[-1]["messages"]] == ["two"]
    await units.ok("LLM_DELETE", llm_id=llm_id)
    gone = await units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": ada, "chat_id": chat_id, "llm_id": llm_id, "user_input": "three"}})
    assert gone.status.code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_user_checks_chat_contexts_and_turns_of_generations_at_once_share_batch_calls(units):
    _, llm_id = await units.model()
    pairs = []
    for i in range(8):
        user_id = await units.user(f"speaker{i}")
        pairs.append((user_id, await units.chat(user_id)))
    units.calls.clear()
    results = await asyncio.gather(*(units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": user_id, "chat_id": chat_id, "llm_id": llm_id, "user_input": "hi"}}) for user_id, chat_id in pairs))
    assert all(result.status.code == 0 for result in results)
    assert units.calls.count("GenerateReply") == 8
    assert 1 <= units.calls.count("BatchGetUsers") < 8 and "GetUser" not in units.calls
    assert 1 <= units.calls.count("BatchListRecentMessages") < 8 and "ListRecentMessages" not in units.calls
    assert 1 <= units.calls.count("BatchAppendMessages") < 8 and "AppendMessages" not in units.calls


async def test_user_gets_at_once_share_batch_calls_and_a_missing_user_is_still_not_found(units):
    user_ids = [await units.user(f"reader{i}") for i in range(8)]
    units.calls.clear()
    results = await asyncio.gather(*(units.run({"type": "USER_GET", "data": {"user_id": user_id}})
                                     for user_id in user_ids + ["no-such-user"]))
    assert [result.user.user_id for result in results[:-1]] == user_ids
    assert (results[-1].status.code, results[-1].status.reason) == (grpc.StatusCode.NOT_FOUND.value[0],
                                                                    "USER_NOT_FOUND")
    assert 1 <= units.calls.count("BatchGetUsers") < 8 and units.calls.count("GetUser") == 1  # the missing one


async def test_an_entry_that_fails_in_a_batch_gets_the_units_own_error(units):
    users, chats = units.gateways.users, units.gateways.chats
    ada = await units.user("ada")
    chat_id = await units.chat(ada)
    turn = chat_pb2.NewMessage(user_id=ada, content="hi", role=chat_pb2.MESSAGE_ROLE_USER)
    outcomes = await asyncio.gather(
        chats.append_messages(chat_pb2.AppendMessagesRequest(request_id="r1", chat_id=chat_id, messages=[turn])),
        chats.append_messages(chat_pb2.AppendMessagesRequest(request_id="r2", chat_id="no-such-chat", messages=[turn])),
        chats.recent_messages(chat_pb2.ListRecentMessagesRequest(chat_id=chat_id, member_user_id=ada)),
        chats.recent_messages(chat_pb2.ListRecentMessagesRequest(chat_id=chat_id, member_user_id="someone-else")),
        users.live_user(ada),
        users.live_user("no-such-user"),
        return_exceptions=True)
    appended, no_chat, recent, not_member, user, no_user = outcomes
    assert [message.content for message in appended] == ["hi"]
    assert isinstance(recent, list)  # empty or not: the batches of appends and reads are not ordered
    assert user.user_id == ada
    for error, code, reason in ((no_chat, grpc.StatusCode.NOT_FOUND, "CHAT_NOT_FOUND"),
                                (not_member, grpc.StatusCode.PERMISSION_DENIED, "NOT_A_CHAT_MEMBER"),
                                (no_user, grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")):
        assert isinstance(error, grpc.aio.AioRpcError) and error.code() == code
        assert error_info(error).reason == reason
