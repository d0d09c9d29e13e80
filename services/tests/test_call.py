"""`llmchatlinker call` reads an instruction in the forms users have at hand."""

import argparse
import io

import pytest

from llmchatlinker.client import LLMChatLinkerError
from services import call


@pytest.mark.parametrize("text", [
    '{"user_create": {"username": "ada"}}',                       # protobuf JSON, as grpcurl's
    '{"userCreate": {"username": "ada"}}',                        # its camelCase spelling
    '{"instruction": {"user_create": {"username": "ada"}}}',      # a SubmitRequest, as grpcurl sends
    '{"type": "USER_CREATE", "data": {"username": "ada"}}',       # the original JSON form
])
def test_each_form_gives_the_same_instruction(text):
    instruction = call.parse(text)
    assert instruction.WhichOneof("instruction") == "user_create"
    assert instruction.user_create.username == "ada"


@pytest.mark.parametrize("text", ["{not json", "[1]", "{}", '{"user_creat": {}}', '{"type": "NO_SUCH", "data": {}}'])
def test_what_is_no_instruction_is_invalid_argument(text):
    with pytest.raises(LLMChatLinkerError) as raised:
        call.parse(text)
    assert raised.value.code.name == "INVALID_ARGUMENT" and raised.value.reason


def test_a_suite_out_of_reach_exits_unavailable_with_its_address():
    from testkit.ports import free_ports

    address = f"127.0.0.1:{free_ports(1)[0]}"
    args = argparse.Namespace(instruction='{"user_list": {}}', get=None, address=address, timeout=10)
    stdout, stderr = io.StringIO(), io.StringIO()
    assert call.run(args, stdout=stdout, stderr=stderr) == 14
    assert stdout.getvalue() == ""
    assert f"cannot reach the suite at {address}: is `make run` running? (SUITE_UNREACHABLE)" in stderr.getvalue()
