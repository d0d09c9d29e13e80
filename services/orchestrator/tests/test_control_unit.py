"""The Control Unit against the real units: the 26 instructions, their errors, and idempotency."""

import datetime
import json

import grpc

from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.wire import result_to_json
from services.orchestrator.instructions import catalog
from services.orchestrator.instructions import run as handler_run
from services.orchestrator.instructions.catalog import Entry
from services.orchestrator.instructions.control import ControlUnit
from services.orchestrator.queue.bodies import decode
from services.orchestrator.units.channels import UnitChannels
from services.orchestrator.units.gateways import Units

OK = grpc.StatusCode.OK.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED.value[0]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


async def test_user_instructions(units):
    created = await units.ok("USER_CREATE", username="Ada", display_name=None, profile="mathematician")
    assert created.final and created.instruction_type == pb.INSTRUCTION_TYPE_USER_CREATE
    assert created.status == pb.Status(code=OK)
    user = created.user
    assert (user.username, user.display_name, user.profile) == ("ada", "ada", "mathematician")

    assert (await units.ok("USER_GET", username="ada")).user.user_id == user.user_id
    assert (await units.ok("USER_GET", user_id=user.user_id)).user.username == "ada"
    updated = await units.ok("USER_UPDATE", user_id=user.user_id, username=None, display_name="Ada L.", profile=None)
    changed = updated.user
    assert (changed.username, changed.display_name, changed.profile) == ("ada", "Ada L.", "mathematician")

    await units.user("grace")
    listed = await units.ok("USER_LIST")
    assert [u.username for u in listed.users.users] == ["ada", "grace"]

    enabled = await units.ok("USER_INSTRUCTION_RECORDING_ENABLE", user_id=user.user_id)
    assert enabled.user.record_instructions
    disabled = await units.ok("USER_INSTRUCTION_RECORDING_DISABLE", user_id=user.user_id)
    assert not disabled.user.record_instructions

    deleted = await units.ok("USER_DELETE", user_id=user.user_id)
    assert deleted.WhichOneof("payload") is None
    gone = await units.run({"type": "USER_GET", "data": {"user_id": user.user_id}})
    assert gone.status.code == NOT_FOUND and gone.status.reason == "USER_NOT_FOUND"
    assert [u.username for u in (await units.ok("USER_LIST")).users.users] == ["grace"]


async def test_record_instructions_list_and_delete(units):
    ada = await units.user("ada")
    assert list((await units.ok("USER_INSTRUCTION_RECORDS_LIST", user_id=ada)).records.records) == []
    assert (await units.ok("USER_INSTRUCTION_RECORDS_DELETE", user_id=ada)).WhichOneof("payload") is None
    unknown = await units.run({"type": "USER_INSTRUCTION_RECORDS_LIST", "data": {"user_id": "no-such-user"}})
    assert unknown.status.code == NOT_FOUND and unknown.status.domain == "user.llmchatlinker.dev"


async def test_chat_instructions(units):
    ada, grace = await units.user("ada"), await units.user("grace")
    created = await units.ok("CHAT_CREATE", title="Rivers", user_ids=[ada, grace])
    view = created.chat
    assert view.chat.title == "Rivers" and list(view.chat.user_ids) == [ada, grace]
    assert [u.username for u in view.users] == ["ada", "grace"]
    chat_id = view.chat.chat_id

    updated = await units.ok("CHAT_UPDATE", chat_id=chat_id, title="Lakes")
    assert updated.chat.chat.title == "Lakes" and [u.user_id for u in updated.chat.users] == [ada, grace]

    await units.ok("USER_DELETE", user_id=grace)
    loaded = await units.ok("CHAT_LOAD", chat_id=chat_id)
    assert loaded.chat.chat.title == "Lakes"
    assert [u.username for u in loaded.chat.users] == ["ada"]  # deleted members are left out
    assert list(loaded.chat.messages) == []

    other = await units.chat(ada, title="Seas")
    assert [c.chat_id for c in (await units.ok("CHAT_LIST")).chats.chats] == [chat_id, other]
    by_user = await units.ok("CHAT_LIST_BY_USER", user_id=ada)
    assert [c.chat_id for c in by_user.chats.chats] == [chat_id, other]

    assert (await units.ok("CHAT_DELETE", chat_id=chat_id)).WhichOneof("payload") is None
    gone = await units.run({"type": "CHAT_LOAD", "data": {"chat_id": chat_id}})
    assert gone.status.code == NOT_FOUND and gone.status.reason == "CHAT_NOT_FOUND"
    assert gone.status.domain == "chat.llmchatlinker.dev" and gone.WhichOneof("payload") is None
    assert [c.chat_id for c in (await units.ok("CHAT_LIST")).chats.chats] == [other]


async def test_chat_create_refuses_unknown_members_and_creates_nothing(units):
    ada = await units.user("ada")
    result = await units.run({"type": "CHAT_CREATE", "data": {"title": "t", "user_ids": [ada, "no-such-user"]}})
    assert result.status.code == NOT_FOUND and result.status.reason == "USER_NOT_FOUND"
    assert "CreateChat" not in units.calls
    assert list((await units.ok("CHAT_LIST")).chats.chats) == []


async def test_chat_list_by_unknown_user_is_not_found(units):
    result = await units.run({"type": "CHAT_LIST_BY_USER", "data": {"user_id": "no-such-user"}})
    assert result.status.code == NOT_FOUND and result.status.reason == "USER_NOT_FOUND"


async def test_provider_and_llm_instructions(units):
    added = await units.ok("LLM_PROVIDER_ADD", name="local", api_endpoint=units.provider.openai_url,
                           api_key="sk-secret")
    provider = added.provider
    assert provider.kind == llm_pb2.PROVIDER_KIND_OPENAI and provider.has_api_key
    assert "sk-secret" not in str(added) and "api_key" not in result_to_json(added)["data"]["provider"]
    updated = await units.ok("LLM_PROVIDER_UPDATE", provider_id=provider.provider_id, name="renamed", api_key="",
                             kind="ollama")
    assert updated.provider.name == "renamed" and not updated.provider.has_api_key
    assert updated.provider.kind == llm_pb2.PROVIDER_KIND_OLLAMA
    assert [p.name for p in (await units.ok("LLM_PROVIDER_LIST")).providers.providers] == ["renamed"]

    llm = (await units.ok("LLM_ADD", provider_id=provider.provider_id, llm_name="llama", context_max_messages=7)).llm
    assert (llm.name, llm.provider_id, llm.context_max_messages) == ("llama", provider.provider_id, 7)
    renamed = await units.ok("LLM_UPDATE", llm_id=llm.llm_id, llm_name="llama2")
    assert renamed.llm.name == "llama2" and renamed.llm.context_max_messages == 7
    other_provider, other_llm = await units.model("mistral")
    assert [m.llm_id for m in (await units.ok("LLM_LIST")).llms.llms] == [llm.llm_id, other_llm]
    by_provider = await units.ok("LLM_LIST_BY_PROVIDER", provider_id=other_provider)
    assert [m.llm_id for m in by_provider.llms.llms] == [other_llm]

    assert (await units.ok("LLM_DELETE", llm_id=llm.llm_id)).WhichOneof("payload") is None
    assert [m.llm_id for m in (await units.ok("LLM_LIST")).llms.llms] == [other_llm]
    assert (await units.ok("LLM_PROVIDER_DELETE", provider_id=other_provider)).WhichOneof("payload") is None
    assert list((await units.ok("LLM_LIST")).llms.llms) == []
    gone = await units.run({"type": "LLM_LIST_BY_PROVIDER", "data": {"provider_id": other_provider}})
    assert gone.status.code == NOT_FOUND and gone.status.domain == "llm.llmchatlinker.dev"


async def test_already_exists_keeps_its_code_and_reason(units):
    await units.user("ada")
    again = await units.run({"type": "USER_CREATE", "data": {"username": "ADA"}})
    assert again.status.code == ALREADY_EXISTS
    assert again.status.reason and again.status.domain == "user.llmchatlinker.dev"
    assert result_to_json(again) == {"status": "error", "message": again.status.message, "data": {}}
    await units.ok("LLM_PROVIDER_ADD", name="local", api_endpoint=units.provider.openai_url)
    twice = await units.run({"type": "LLM_PROVIDER_ADD", "data": {"name": "local", "api_endpoint": "http://h/x"}})
    assert twice.status.code == ALREADY_EXISTS and twice.status.domain == "llm.llmchatlinker.dev"


async def test_unit_validation_errors_keep_their_reason(units):
    bad = await units.run({"type": "USER_CREATE", "data": {"username": "1-not-valid"}})
    assert bad.status.code == INVALID_ARGUMENT and bad.status.domain == "user.llmchatlinker.dev"
    assert bad.status.message and bad.status.reason


async def test_executing_the_same_instruction_twice_applies_it_once(units):
    ada = await units.user("ada")
    body = {"type": "CHAT_CREATE", "data": {"title": "Once", "user_ids": [ada]}}
    first = await units.run(body, instruction_id="instruction-1")
    second = await units.run(body, instruction_id="instruction-1")
    assert first.status.code == second.status.code == OK
    assert first.chat.chat.chat_id == second.chat.chat.chat_id
    assert len((await units.ok("CHAT_LIST")).chats.chats) == 1
    user_again = await units.run({"type": "USER_CREATE", "data": {"username": "ada"}}, instruction_id="instruction-2")
    assert user_again.status.code == ALREADY_EXISTS  # a different id is a different instruction


async def test_instructions_without_an_id_are_not_deduplicated(units):
    ada = await units.user("ada")
    instruction = pb.Instruction(chat_create=pb.ChatCreate(title="t", user_ids=[ada]))
    for _ in range(2):
        assert (await units.control.execute(instruction, units.emit)).status.code == OK
    assert len((await units.ok("CHAT_LIST")).chats.chats) == 2


async def test_lists_follow_every_page_unless_a_page_is_asked_for(units, monkeypatch):
    monkeypatch.setattr(handler_run, "COLLECTING_PAGE_SIZE", 2)
    for name in ("ada", "bob", "cyd", "dan", "eve"):
        await units.user(name)
    everything = await units.ok("USER_LIST")
    assert [u.username for u in everything.users.users] == ["ada", "bob", "cyd", "dan", "eve"]
    assert everything.users.next_page_token == ""
    assert units.calls.count("ListUsers") == 3

    page = await units.ok("USER_LIST", page_size=2)
    assert [u.username for u in page.users.users] == ["ada", "bob"] and page.users.next_page_token
    rest = await units.ok("USER_LIST", page_size=10, page_token=page.users.next_page_token)
    assert [u.username for u in rest.users.users] == ["cyd", "dan", "eve"] and not rest.users.next_page_token


async def test_list_collection_stops_at_the_cap_with_a_token(units, monkeypatch):
    monkeypatch.setattr(handler_run, "COLLECTING_PAGE_SIZE", 2)
    monkeypatch.setattr(handler_run, "MAX_COLLECTED_ITEMS", 3)
    for name in ("ada", "bob", "cyd", "dan", "eve"):
        await units.user(name)
    capped = await units.ok("USER_LIST")
    assert [u.username for u in capped.users.users] == ["ada", "bob", "cyd", "dan"]
    assert capped.users.next_page_token
    rest = await units.ok("USER_LIST", page_size=5, page_token=capped.users.next_page_token)
    assert [u.username for u in rest.users.users] == ["eve"]


async def test_unit_that_is_down_is_unavailable(units):
    dead = UnitChannels.connect("127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1")
    try:
        result = await ControlUnit(Units.over(dead)).execute(
            pb.Instruction(instruction_id="i", user_list=pb.UserList()), units.emit)
    finally:
        await dead.close()
    assert result.final and result.status.code == UNAVAILABLE
    assert result.status.reason == "UNIT_UNAVAILABLE" and result.status.domain == "orchestrator.llmchatlinker.dev"
    assert result.status.message.startswith("a unit of the suite is unavailable")


async def test_an_empty_instruction_is_invalid(units):
    result = await units.control.execute(pb.Instruction(instruction_id="i"), units.emit)
    assert result.final and result.status.code == INVALID_ARGUMENT
    assert result.status.reason == "MALFORMED_INSTRUCTION"
    assert result.instruction_type == pb.INSTRUCTION_TYPE_UNSPECIFIED


async def test_typed_instruction_with_an_empty_provider_is_refused_not_widened(units):
    result = await units.run(pb.Instruction(llm_list_by_provider=pb.LlmListByProvider()))
    assert result.status.code == INVALID_ARGUMENT and result.status.reason == "INVALID_FIELD"
    assert "ListLlms" not in units.calls


async def test_unexpected_failure_is_internal_and_never_raised(units, monkeypatch):
    async def broken(run, request):
        raise RuntimeError("bug")

    monkeypatch.setitem(catalog.CATALOG, "user_list", Entry(broken))
    result = await units.run({"type": "USER_LIST"})
    assert result.final and result.status.code == grpc.StatusCode.INTERNAL.value[0]
    assert result.status.reason == "INTERNAL" and "bug" not in result.status.message


async def test_chat_load_returns_every_message_oldest_first(units, monkeypatch):
    monkeypatch.setattr(handler_run, "COLLECTING_PAGE_SIZE", 2)
    ada = await units.user("ada")
    chat_id = await units.chat(ada)
    _, llm_id = await units.model()
    for text in ("one", "two", "three"):
        await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input=text)
    loaded = await units.ok("CHAT_LOAD", chat_id=chat_id)
    assert [m.content for m in loaded.chat.messages] == [
        "one", "echo: one", "two", "echo: two", "three", "echo: three"]
    assert not loaded.chat.next_message_page_token
    page = await units.ok("CHAT_LOAD", chat_id=chat_id, message_page_size=2)
    assert [m.content for m in page.chat.messages] == ["three", "echo: three"]
    assert page.chat.next_message_page_token


async def test_legacy_bodies_get_legacy_replies(units):
    async def legacy(json_type: str, **data) -> dict:
        instruction = decode(json.dumps({"type": json_type, "data": data}).encode(), None)
        instruction.instruction_id = f"legacy-{len(units.calls)}"
        return result_to_json(await units.control.execute(instruction, units.emit))

    user = await legacy("USER_CREATE", username="ada", display_name=None, profile=None)
    assert user["status"] == "success" and user["message"] == "User created."
    ada = user["data"]["user"]
    assert ada["username"] == "ada" and datetime.datetime.fromisoformat(ada["created_at"]).tzinfo is not None
    chat = await legacy("CHAT_CREATE", title="Rivers", user_ids=[ada["user_id"]])
    assert [u["username"] for u in chat["data"]["chat"]["users"]] == ["ada"]
    provider = await legacy("LLM_PROVIDER_ADD", name="local", api_endpoint=units.provider.openai_url, api_key="k")
    assert provider["data"]["provider"]["has_api_key"] is True and "api_key" not in provider["data"]["provider"]
    llm = await legacy("LLM_ADD", provider_id=provider["data"]["provider"]["provider_id"], llm_name="llama")
    answer = await legacy("LLM_RESPONSE_GENERATE", user_id=ada["user_id"], chat_id=chat["data"]["chat"]["chat_id"],
                          provider_id=provider["data"]["provider"]["provider_id"], llm_id=llm["data"]["llm"]["llm_id"],
                          user_input="hello there")
    assert answer["data"]["llm_response"]["content"] == "echo: hello there"
    assert answer["data"]["llm_response"]["role"] == "assistant"
    loaded = await legacy("CHAT_LOAD", chat_id=chat["data"]["chat"]["chat_id"])
    assert [m["role"] for m in loaded["data"]["chat"]["messages"]] == ["user", "assistant"]
    assert await legacy("USER_INSTRUCTION_RECORDING_ENABLE", user_id=ada["user_id"]) == {
        "status": "success", "message": "Instruction recording enabled.", "data": {}}
    missing = await legacy("USER_GET", user_id="no-such-user")
    assert missing["status"] == "error" and missing["data"] == {} and missing["message"]
