"""`llmchatlinker call`: one instruction from the shell, with an exit status that says how it went.

Token deltas go to stdout as they arrive, then the final Result as one line of JSON; the exit
status is the result's gRPC status code (0 OK, 3 INVALID_ARGUMENT, 5 NOT_FOUND, 14 UNAVAILABLE, ...)
and a failure is also told on stderr. `--get PATH` prints one field of the final result instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

import grpc
from google.protobuf import json_format

from llmchatlinker.client import Client, LLMChatLinkerError
from llmchatlinker.client.errors import DOMAIN, INVALID_FIELD
from llmchatlinker.client.instructions import delta_text
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.wire import WireError, instruction_from_json

PROG = "llmchatlinker call"
EXAMPLE = """examples:
  llmchatlinker call '{"user_create": {"username": "ada"}}'
  llmchatlinker call --get user.user_id '{"user_create": {"username": "ada"}}'
  llmchatlinker call '{"type": "USER_LIST", "data": {}}'          # the original JSON form
The instruction is an Instruction in protobuf JSON (as grpcurl takes it, with or without the
{"instruction": ...} wrapper) or the original {"type", "data"} form."""


def add_parser(commands) -> None:
    call = commands.add_parser(
        "call", help="run one instruction; exit status 0 when it succeeded, its gRPC code when not",
        description=__doc__.split("\n\n", 1)[1], epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    call.add_argument("instruction", help="the instruction as JSON ('-' reads it from stdin)")
    call.add_argument("--get", metavar="PATH", help="print only this field of the final result, "
                                                   "such as user.user_id or llm_response.message.content")
    call.add_argument("--address", help="the orchestrator (default $LLMCHATLINKER_ORCHESTRATOR_ADDR, "
                                        "then 127.0.0.1:50051)")
    call.add_argument("--timeout", type=float, help="seconds the instruction may take "
                                                    "(default $LLMCHATLINKER_CLIENT_TIMEOUT, then 300)")


def run(args: argparse.Namespace, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
        stderr: TextIO = sys.stderr) -> int:
    """Runs the instruction; returns the exit status."""
    try:
        instruction = parse(stdin.read() if args.instruction == "-" else args.instruction)
        with Client(args.address, timeout=args.timeout) as client:
            final = _stream(client, instruction, stdout, quiet=bool(args.get))
    except LLMChatLinkerError as error:
        print(f"{PROG}: {error}", file=stderr)
        return error.code.value[0]
    shown = json_format.MessageToDict(final, preserving_proto_field_name=True)
    if final.status.code:
        print(json.dumps(shown, ensure_ascii=False), file=stdout)
        print(f"{PROG}: {LLMChatLinkerError.from_status(final.status)}", file=stderr)
        return final.status.code
    if not args.get:
        print(json.dumps(shown, ensure_ascii=False), file=stdout)
        return 0
    value = _field(shown, args.get)
    if value is None:
        print(f"{PROG}: the result has no field {args.get!r}: {json.dumps(shown)}", file=stderr)
        return grpc.StatusCode.NOT_FOUND.value[0]
    print(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False), file=stdout)
    return 0


def parse(text: str) -> pb.Instruction:
    """An Instruction from protobuf JSON, a SubmitRequest's JSON, or the original {"type", "data"}."""
    try:
        body = json.loads(text)
    except ValueError as error:
        raise _invalid(f"the instruction is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise _invalid("the instruction must be a JSON object, such as {\"user_list\": {}}")
    if "type" in body:
        try:
            return instruction_from_json(body)
        except WireError as error:
            raise LLMChatLinkerError(grpc.StatusCode.INVALID_ARGUMENT, error.message, error.reason, DOMAIN) from None
    if set(body) == {"instruction"}:
        body = body["instruction"]
    try:
        instruction = json_format.ParseDict(body, pb.Instruction())
    except json_format.ParseError as error:
        raise _invalid(f"not an Instruction: {error}") from None
    if instruction.WhichOneof("instruction") is None:
        raise _invalid("the instruction names no type, such as {\"user_list\": {}}")
    return instruction


def _stream(client: Client, instruction: pb.Instruction, stdout: TextIO, quiet: bool) -> pb.Result:
    streamed = False
    for result in client.events(instruction):
        if result.final:
            if streamed:
                print(file=stdout)  # the JSON starts on a line of its own
            return result
        text = delta_text(result)
        if text and not quiet:
            stdout.write(text)
            stdout.flush()
            streamed = True
    raise AssertionError("unreachable: events() ends with a final result or raises")


def _field(shown: dict, path: str):
    value: object = shown
    for key in path.split("."):
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return None
    return value


def _invalid(message: str) -> LLMChatLinkerError:
    return LLMChatLinkerError(grpc.StatusCode.INVALID_ARGUMENT, message, INVALID_FIELD, DOMAIN)
