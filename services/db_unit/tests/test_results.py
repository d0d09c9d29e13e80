"""PutResult and GetResult: the first writer wins, and limits on ids and sizes."""

import datetime

import grpc
import pytest

from llmchatlinker.db.v1 import db_service_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MIB = 1024 * 1024


def test_put_result_stores_it_for_get_result(stub):
    before = datetime.datetime.now(datetime.timezone.utc)

    put = stub.PutResult(pb.PutResultRequest(instruction_id="ins-1", result=b"\x00first\xff"))
    got = stub.GetResult(pb.GetResultRequest(instruction_id="ins-1"))

    assert (put.result, put.already_stored) == (b"\x00first\xff", False)
    assert got.result == b"\x00first\xff"
    assert got.create_time.ToDatetime(datetime.timezone.utc) >= before.replace(microsecond=0)


def test_put_result_again_keeps_and_returns_the_first(stub):
    stub.PutResult(pb.PutResultRequest(instruction_id="ins-1", result=b"first"))

    again = stub.PutResult(pb.PutResultRequest(instruction_id="ins-1", result=b"second"))

    assert (again.result, again.already_stored) == (b"first", True)
    assert stub.GetResult(pb.GetResultRequest(instruction_id="ins-1")).result == b"first"


def test_an_empty_result_is_a_result(stub):
    stub.PutResult(pb.PutResultRequest(instruction_id="ins-1", result=b""))

    assert stub.PutResult(pb.PutResultRequest(instruction_id="ins-1", result=b"x")).already_stored is True
    assert stub.GetResult(pb.GetResultRequest(instruction_id="ins-1")).result == b""


def test_get_result_names_the_missing_instruction(stub, fails):
    request = pb.GetResultRequest(instruction_id="gone")

    error = fails(grpc.StatusCode.NOT_FOUND, "RESULT_NOT_FOUND", stub.GetResult, request)

    assert "gone" in error.details()


def test_results_are_kept_apart_by_instruction_id(stub):
    stub.PutResult(pb.PutResultRequest(instruction_id="a", result=b"A"))
    stub.PutResult(pb.PutResultRequest(instruction_id="A", result=b"upper"))

    assert stub.GetResult(pb.GetResultRequest(instruction_id="a")).result == b"A"
    assert stub.GetResult(pb.GetResultRequest(instruction_id="A")).result == b"upper"


def test_a_16_mib_result_round_trips(stub):
    payload = bytes(range(256)) * (16 * MIB // 256)

    assert stub.PutResult(pb.PutResultRequest(instruction_id="big", result=payload)).already_stored is False
    assert stub.GetResult(pb.GetResultRequest(instruction_id="big")).result == payload


def test_put_result_refuses_more_than_16_mib(stub, fails):
    request = pb.PutResultRequest(instruction_id="huge", result=b"x" * (16 * MIB + 1))

    fails(INVALID, "RESULT_TOO_LARGE", stub.PutResult, request)
    fails(grpc.StatusCode.NOT_FOUND, "RESULT_NOT_FOUND", stub.GetResult, pb.GetResultRequest(instruction_id="huge"))


@pytest.mark.parametrize(
    ("instruction_id", "reason"), [("", "MISSING_INSTRUCTION_ID"), ("i" * 129, "INSTRUCTION_ID_TOO_LONG")]
)
def test_result_calls_reject_a_bad_instruction_id(stub, fails, instruction_id, reason):
    fails(INVALID, reason, stub.PutResult, pb.PutResultRequest(instruction_id=instruction_id, result=b"r"))
    fails(INVALID, reason, stub.GetResult, pb.GetResultRequest(instruction_id=instruction_id))


def test_the_longest_instruction_id_is_accepted(stub):
    stub.PutResult(pb.PutResultRequest(instruction_id="i" * 128, result=b"r"))

    assert stub.GetResult(pb.GetResultRequest(instruction_id="i" * 128)).result == b"r"
