"""Instruction recording against the real user and db units."""

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.wire import instruction_from_json
from services.orchestrator.instructions.recording import record_instruction
from services.orchestrator.units.channels import UnitChannels
from services.orchestrator.units.gateways import Units


async def _run_and_record(units, json_type: str, instruction_id: str | None = None, **data) -> pb.Result:
    instruction = instruction_from_json({"type": json_type, "data": data})
    instruction.instruction_id = instruction_id or f"{json_type.lower()}-{len(units.calls)}"
    result = await units.control.execute(instruction, units.emit)
    await record_instruction(units.gateways, instruction, result)
    return result


async def _records(units, user_id: str) -> list:
    return list((await units.ok("USER_INSTRUCTION_RECORDS_LIST", user_id=user_id)).records.records)


async def test_instructions_naming_a_recorded_user_are_recorded(units):
    ada = await units.user("ada")
    _, llm_id = await units.model()
    await _run_and_record(units, "USER_INSTRUCTION_RECORDING_ENABLE", user_id=ada)
    await _run_and_record(units, "USER_GET", user_id=ada)
    created = await _run_and_record(units, "CHAT_CREATE", title="Rivers", user_ids=[ada])
    chat_id = created.chat.chat.chat_id
    generated = await _run_and_record(units, "LLM_RESPONSE_GENERATE", instruction_id="generate-1", user_id=ada,
                                      chat_id=chat_id, llm_id=llm_id, user_input="hi")
    assert generated.status.code == 0
    intruder = await units.user("bob")
    other_chat = await units.chat(intruder)
    await _run_and_record(units, "LLM_RESPONSE_GENERATE", user_id=ada, chat_id=other_chat, llm_id=llm_id,
                          user_input="let me in")

    records = await _records(units, ada)
    assert [(r.instruction, r.chat_id, r.outcome) for r in records] == [
        ("USER_INSTRUCTION_RECORDING_ENABLE", "", "OK"),
        ("USER_GET", "", "OK"),
        ("CHAT_CREATE", chat_id, "OK"),
        ("LLM_RESPONSE_GENERATE", chat_id, "OK"),
        ("LLM_RESPONSE_GENERATE", other_chat, "PERMISSION_DENIED"),
    ]
    assert records[3].instruction_id == "generate-1" and all(r.user_id == ada for r in records)
    assert await _records(units, intruder) == []  # bob never turned recording on


async def test_recording_the_same_instruction_again_adds_nothing(units):
    ada = await units.user("ada")
    await units.ok("USER_INSTRUCTION_RECORDING_ENABLE", user_id=ada)
    for _ in range(2):
        await _run_and_record(units, "USER_GET", instruction_id="get-1", user_id=ada)
    assert [r.instruction_id for r in await _records(units, ada)] == ["get-1"]


async def test_nothing_is_recorded_once_recording_is_off(units):
    ada = await units.user("ada")
    await _run_and_record(units, "USER_GET", user_id=ada)
    await units.ok("USER_INSTRUCTION_RECORDING_ENABLE", user_id=ada)
    await _run_and_record(units, "USER_INSTRUCTION_RECORDING_DISABLE", user_id=ada)
    await _run_and_record(units, "USER_GET", user_id=ada)
    assert await _records(units, ada) == []


async def test_reading_and_clearing_the_records_is_not_recorded(units):
    ada = await units.user("ada")
    await units.ok("USER_INSTRUCTION_RECORDING_ENABLE", user_id=ada)
    await _run_and_record(units, "USER_GET", user_id=ada)
    await _run_and_record(units, "USER_INSTRUCTION_RECORDS_LIST", user_id=ada)
    assert [r.instruction for r in await _records(units, ada)] == ["USER_GET"]
    deleted = await _run_and_record(units, "USER_INSTRUCTION_RECORDS_DELETE", user_id=ada)
    assert deleted.status.code == 0
    assert await _records(units, ada) == []


async def test_unknown_and_deleted_users_are_skipped_quietly(units):
    ada = await units.user("ada")
    await units.ok("USER_INSTRUCTION_RECORDING_ENABLE", user_id=ada)
    await _run_and_record(units, "USER_GET", user_id="no-such-user")
    await _run_and_record(units, "USER_DELETE", user_id=ada)
    assert "CreateRecord" not in units.calls


async def test_a_record_unit_that_is_down_does_not_raise(units, caplog):
    ada = await units.user("ada")
    await units.ok("USER_INSTRUCTION_RECORDING_ENABLE", user_id=ada)
    instruction = pb.Instruction(instruction_id="i", user_get=pb.UserGet(user_id=ada))
    result = await units.control.execute(instruction, units.emit)
    broken = UnitChannels.connect("127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1")
    broken.users = units.channels.users
    try:
        await record_instruction(Units.over(broken), instruction, result)
    finally:
        await broken.close()
    assert "could not record instruction i" in caplog.text
    assert result.status.code == grpc.StatusCode.OK.value[0]


async def test_a_user_get_learns_the_recording_flag_from_the_user_it_read(units):
    """By id (a joined read) here; by username, GetUser keeps the flag the same way."""
    ada = await units.user("ada")
    await units.ok("USER_INSTRUCTION_RECORDING_ENABLE", user_id=ada)
    units.gateways.users.flags.changed(ada, None)  # forgotten, as after another replica's change
    del units.calls[:]
    await _run_and_record(units, "USER_GET", instruction_id="get-1", user_id=ada)
    assert units.calls == ["BatchGetUsers", "CreateRecord"]  # no second read of ada to learn her flag
    assert [r.instruction_id for r in await _records(units, ada)] == ["get-1"]
