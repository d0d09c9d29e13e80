"""`llmchatlinker call` as a shell script uses it: the exit status says whether the instruction
succeeded, stdout carries the streamed reply and the result, stderr the suite's message."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def call(suite, *args: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "LLMCHATLINKER_ORCHESTRATOR_ADDR": suite.orchestrator}
    return subprocess.run([sys.executable, "-m", "services.cli", "call", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_failed_instruction_exits_with_its_code_and_prints_the_suites_message(suite):
    run = call(suite, '{"user_get": {"user_id": "no-such-user"}}')
    assert run.returncode == 5  # NOT_FOUND
    assert "NOT_FOUND" in run.stderr and "(USER_NOT_FOUND)" in run.stderr
    assert json.loads(run.stdout)["status"]["reason"] == "USER_NOT_FOUND"


def test_a_name_taken_twice_exits_non_zero_the_second_time(suite, unique):
    instruction = json.dumps({"user_create": {"username": unique("shell")}})
    assert call(suite, instruction).returncode == 0
    again = call(suite, instruction)
    assert again.returncode == 6 and "ALREADY_EXISTS" in again.stderr  # ALREADY_EXISTS


def test_a_generation_streams_to_stdout_then_prints_the_result(suite, conversation, provider_server):
    chat = conversation(provider_server.openai_url)
    instruction = {"llm_response_generate": {"user_id": chat.user_id, "chat_id": chat.chat_id,
                                             "llm_id": chat.llm_id, "user_input": "three little words"}}
    run = call(suite, json.dumps(instruction))
    assert run.returncode == 0, run.stderr
    streamed, result = run.stdout.splitlines()
    assert streamed == "echo: three little words"
    assert json.loads(result)["llm_response"]["message"]["content"] == streamed


def test_get_prints_one_field_and_the_original_json_form_is_taken(suite, unique):
    name = unique("shell")
    run = call(suite, "--get", "user.username", json.dumps({"type": "USER_CREATE", "data": {"username": name}}))
    assert (run.returncode, run.stdout) == (0, name + "\n")


def test_blank_input_and_bad_json_are_refused_before_anything_is_sent(suite):
    blank = call(suite, '{"llm_response_generate": {"user_id": "u", "chat_id": "c", "llm_id": "l", "user_input": "  "}}')
    assert blank.returncode == 3 and "user_input is blank" in blank.stderr and "(INVALID_FIELD)" in blank.stderr
    assert call(suite, "{not json").returncode == 3
