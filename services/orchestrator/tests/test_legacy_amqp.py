"""All 29 instruction types through RabbitMQ as an unmodified legacy JSON client sends them, and the
same over protobuf on AMQP and through Submit, with the documented reply keys."""

import json

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.wire import JSON_TYPES, instruction_from_json, result_to_json

USER = {"user_id", "username", "display_name", "profile", "record_instructions", "created_at", "updated_at"}
CHAT = {"chat_id", "title", "users", "messages", "created_at", "updated_at"}
MESSAGE = {"message_id", "chat_id", "user_id", "llm_id", "content", "role", "created_at", "updated_at"}
PROVIDER = {"provider_id", "name", "api_endpoint", "created_at", "updated_at"}
LLM = {"llm_id", "name", "provider_id", "created_at", "updated_at"}
RECORD = {"record_id", "user_id", "chat_id", "instruction", "created_at", "updated_at"}


async def walk_all_instruction_types(call, provider_url: str) -> None:
    """Runs each of the 29 types once through `call(json_type, data) -> legacy reply dict`."""
    seen = set()

    async def ok(json_type: str, expected_keys: set[str] = frozenset(), **data) -> dict:
        reply = await call(json_type, data)
        assert reply["status"] == "success" and reply["message"], (json_type, reply)
        assert set(reply["data"]) == expected_keys, (json_type, reply["data"])
        seen.add(json_type)
        return reply["data"]

    ada = (await ok("USER_CREATE", {"user"}, username="Ada", display_name=None, profile="math"))["user"]
    assert USER <= set(ada) and (ada["username"], ada["display_name"]) == ("ada", "ada")
    bob = (await ok("USER_CREATE", {"user"}, username="bob", display_name="Bob", profile=None))["user"]
    assert (await ok("USER_GET", {"user"}, username="ADA", user_id=None))["user"]["user_id"] == ada["user_id"]
    updated = (await ok("USER_UPDATE", {"user"}, user_id=ada["user_id"], username=None, display_name="Ada L.",
                        profile=None))["user"]
    assert (updated["display_name"], updated["profile"]) == ("Ada L.", "math")
    assert [u["username"] for u in (await ok("USER_LIST", {"users"}))["users"]] == ["ada", "bob"]
    await ok("USER_INSTRUCTION_RECORDING_ENABLE", user_id=ada["user_id"])

    chat = (await ok("CHAT_CREATE", {"chat"}, title="Rivers", user_ids=[ada["user_id"], bob["user_id"]]))["chat"]
    assert CHAT <= set(chat) and [u["username"] for u in chat["users"]] == ["ada", "bob"]
    assert (await ok("CHAT_UPDATE", {"chat"}, chat_id=chat["chat_id"], title="Lakes"))["chat"]["title"] == "Lakes"
    assert [c["chat_id"] for c in (await ok("CHAT_LIST", {"chats"}))["chats"]] == [chat["chat_id"]]
    assert len((await ok("CHAT_LIST_BY_USER", {"chats"}, user_id=bob["user_id"]))["chats"]) == 1

    provider = (await ok("LLM_PROVIDER_ADD", {"provider"}, name="stand-in", api_endpoint=provider_url,
                         api_key="sk-secret"))["provider"]
    assert PROVIDER <= set(provider) and "api_key" not in provider
    provider_id = provider["provider_id"]
    renamed = await ok("LLM_PROVIDER_UPDATE", {"provider"}, provider_id=provider_id, name="stand-in-2",
                       api_endpoint=None, api_key=None)
    assert renamed["provider"]["name"] == "stand-in-2" and "sk-secret" not in json.dumps(renamed)
    assert len((await ok("LLM_PROVIDER_LIST", {"providers"}))["providers"]) == 1
    llm = (await ok("LLM_ADD", {"llm"}, provider_id=provider_id, llm_name="echo-1"))["llm"]
    assert LLM <= set(llm)
    assert (await ok("LLM_UPDATE", {"llm"}, llm_id=llm["llm_id"], llm_name="echo-2"))["llm"]["name"] == "echo-2"
    assert len((await ok("LLM_LIST", {"llms"}))["llms"]) == 1
    assert len((await ok("LLM_LIST_BY_PROVIDER", {"llms"}, provider_id=provider_id))["llms"]) == 1

    answer = (await ok("LLM_RESPONSE_GENERATE", {"llm_response"}, user_id=ada["user_id"], chat_id=chat["chat_id"],
                       provider_id=provider_id, llm_id=llm["llm_id"], user_input="how deep?"))["llm_response"]
    assert MESSAGE <= set(answer) and (answer["role"], answer["content"]) == ("assistant", "echo: how deep?")
    again = (await ok("LLM_RESPONSE_REGENERATE", {"llm_response"}, message_id=answer["message_id"]))["llm_response"]
    assert again["content"] == "echo: how deep?" and again["message_id"] != answer["message_id"]
    loaded = (await ok("CHAT_LOAD", {"chat"}, chat_id=chat["chat_id"]))["chat"]
    assert [m["role"] for m in loaded["messages"]] == ["user", "assistant", "assistant"]

    records = (await ok("USER_INSTRUCTION_RECORDS_LIST", {"records"}, user_id=ada["user_id"]))["records"]
    assert records and all(RECORD <= set(r) for r in records)
    assert {"CHAT_CREATE", "LLM_RESPONSE_GENERATE"} <= {r["instruction"] for r in records}
    await ok("USER_INSTRUCTION_RECORDS_DELETE", user_id=ada["user_id"])
    await ok("USER_INSTRUCTION_RECORDING_DISABLE", user_id=ada["user_id"])

    usage = (await ok("USAGE_LIST", {"usage", "next_page_token"}, group_by="llm"))["usage"]
    assert {"key": llm["llm_id"], "generations": 2} in [{k: u[k] for k in ("key", "generations")} for u in usage]
    limits = (await ok("USER_LIMITS_SET", {"user_limits"}, user_id=ada["user_id"], tokens_per_day=1000))["user_limits"]
    assert (limits["tokens_per_day"], limits["requests_per_minute"]) == (1000, 0)
    assert (await ok("USER_LIMITS_GET", {"user_limits"}, user_id=ada["user_id"]))["user_limits"] == limits
    await ok("LLM_DELETE", llm_id=llm["llm_id"])
    await ok("LLM_PROVIDER_DELETE", provider_id=provider_id)
    await ok("CHAT_DELETE", chat_id=chat["chat_id"])
    await ok("USER_DELETE", user_id=bob["user_id"])
    gone = await call("USER_GET", {"user_id": bob["user_id"]})
    assert gone["status"] == "error" and gone["message"] and gone["data"] == {}
    assert seen == set(JSON_TYPES) and len(seen) == 29  # the original's 26, USAGE_LIST, USER_LIMITS_SET/_GET


async def test_an_unmodified_legacy_json_client_gets_every_reply(suite_db, orchestrators, amqp_url, legacy,
                                                                 blocking_call):
    await orchestrators(suite_db, amqp_url)
    client = await blocking_call(legacy)

    async def call(json_type, data):
        return await blocking_call(client.call, json_type, data)

    await walk_all_instruction_types(call, suite_db.provider.openai_url)


async def test_the_same_over_protobuf_on_amqp(suite, orchestrators, amqp_url, legacy, blocking_call):
    await orchestrators(suite, amqp_url)
    client = await blocking_call(legacy)

    async def call(json_type, data):
        instruction = instruction_from_json({"type": json_type, "data": data})
        results = await blocking_call(client.call_proto, instruction)
        assert results[-1].final and all(not r.final for r in results[:-1])
        return result_to_json(results[-1])

    await walk_all_instruction_types(call, suite.provider.openai_url)


async def test_the_same_through_submit(suite, orchestrators, amqp_url, submit_stub, submit):
    server = await orchestrators(suite, amqp_url)
    async with submit_stub(server) as stub:
        async def call(json_type, data):
            results = await submit(stub, instruction_from_json({"type": json_type, "data": data}))
            assert results[0].HasField("accepted") and results[-1].final
            assert results[-1].instruction_type == pb.InstructionType.Value("INSTRUCTION_TYPE_" + json_type)
            return result_to_json(results[-1])

        await walk_all_instruction_types(call, suite.provider.openai_url)
