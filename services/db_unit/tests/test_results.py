"""PutResult, GetResult and their batches: the first writer wins, answers keep the order asked, and limits."""

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


def put_results(stub, *entries: tuple[str, bytes]) -> list[tuple[bytes, bool]]:
    request = pb.PutResultsRequest(results=[pb.PutResultRequest(instruction_id=i, result=r) for i, r in entries])
    return [(answer.result, answer.already_stored) for answer in stub.PutResults(request).results]


def got_results(stub, *instruction_ids: str) -> list[tuple[str, bytes]]:
    response = stub.GetResults(pb.GetResultsRequest(instruction_ids=instruction_ids))
    return [(stored.instruction_id, stored.result) for stored in response.results]


def test_put_results_stores_each_for_get_results_in_the_order_given(stub):
    answers = put_results(stub, ("c", b"C"), ("a", b"A"), ("b", b"\x00B\xff"))

    assert answers == [(b"C", False), (b"A", False), (b"\x00B\xff", False)]
    assert got_results(stub, "b", "c", "a") == [("b", b"\x00B\xff"), ("c", b"C"), ("a", b"A")]


def test_put_results_keeps_and_returns_results_stored_earlier(stub):
    stub.PutResult(pb.PutResultRequest(instruction_id="old", result=b"first"))

    answers = put_results(stub, ("new", b"N"), ("old", b"second"))

    assert answers == [(b"N", False), (b"first", True)]
    assert got_results(stub, "old", "new") == [("old", b"first"), ("new", b"N")]


def test_put_results_again_keeps_the_first_batch(stub):
    put_results(stub, ("a", b"A1"), ("b", b"B1"))

    assert put_results(stub, ("b", b"B2"), ("a", b"A2")) == [(b"B1", True), (b"A1", True)]


def test_put_results_stores_an_id_given_twice_once_and_answers_the_later_entry_with_the_first(stub):
    answers = put_results(stub, ("a", b"first"), ("b", b"B"), ("a", b"second"), ("a", b"third"))

    assert answers == [(b"first", False), (b"B", False), (b"first", True), (b"first", True)]
    assert stub.GetResult(pb.GetResultRequest(instruction_id="a")).result == b"first"


def test_put_results_takes_a_thousand_entries(stub):
    entries = [(f"ins-{index}", f"result {index}".encode()) for index in range(1000)]

    answers = put_results(stub, *entries)

    assert answers == [(result, False) for _, result in entries]
    assert got_results(stub, *(instruction_id for instruction_id, _ in entries)) == entries


def test_get_results_answers_each_id_once_in_the_order_first_asked(stub):
    put_results(stub, ("a", b"A"), ("b", b"B"), ("c", b"C"))

    assert got_results(stub, "c", "a", "c", "b", "a") == [("c", b"C"), ("a", b"A"), ("b", b"B")]


def test_get_results_leaves_out_ids_with_no_result(stub):
    put_results(stub, ("a", b"A"), ("b", b"B"))

    assert got_results(stub, "gone", "b", "missing", "a") == [("b", b"B"), ("a", b"A")]
    assert got_results(stub, "gone") == []


def test_get_results_gives_the_time_get_result_gives(stub):
    put_results(stub, ("a", b"A"))

    (stored,) = stub.GetResults(pb.GetResultsRequest(instruction_ids=["a"])).results

    assert stored.create_time == stub.GetResult(pb.GetResultRequest(instruction_id="a")).create_time
    assert stored.create_time.seconds > 0


@pytest.mark.parametrize(
    ("instruction_id", "size", "reason", "named"),
    [
        ("", 1, "MISSING_INSTRUCTION_ID", "results[2].instruction_id"),
        ("i" * 129, 1, "INSTRUCTION_ID_TOO_LONG", "results[2].instruction_id"),
        ("huge", 16 * MIB + 1, "RESULT_TOO_LARGE", "results[2].result"),
    ],
)
def test_put_results_with_a_bad_entry_names_it_and_stores_none(stub, fails, instruction_id, size, reason, named):
    good = [pb.PutResultRequest(instruction_id=f"ok-{index}", result=b"r") for index in range(3)]
    bad = pb.PutResultRequest(instruction_id=instruction_id, result=b"x" * size)
    request = pb.PutResultsRequest(results=[*good[:2], bad, good[2]])

    error = fails(INVALID, reason, stub.PutResults, request)

    assert error.details().startswith(named + " "), error.details()
    assert got_results(stub, "ok-0", "ok-1", "ok-2", "huge") == []


@pytest.mark.parametrize(("bad", "reason"), [("", "MISSING_INSTRUCTION_ID"), ("i" * 129, "INSTRUCTION_ID_TOO_LONG")])
def test_get_results_with_a_bad_id_names_it(stub, fails, bad, reason):
    error = fails(INVALID, reason, stub.GetResults, pb.GetResultsRequest(instruction_ids=["a", bad]))

    assert error.details().startswith("instruction_ids[1] "), error.details()


def test_batches_hold_one_to_a_thousand_entries(stub, fails):
    entry = pb.PutResultRequest(instruction_id="a", result=b"r")

    fails(INVALID, "MISSING_RESULTS", stub.PutResults, pb.PutResultsRequest())
    fails(INVALID, "TOO_MANY_RESULTS", stub.PutResults, pb.PutResultsRequest(results=[entry] * 1001))
    fails(INVALID, "MISSING_INSTRUCTION_IDS", stub.GetResults, pb.GetResultsRequest())
    fails(INVALID, "TOO_MANY_INSTRUCTION_IDS", stub.GetResults, pb.GetResultsRequest(instruction_ids=["a"] * 1001))
    assert got_results(stub, "a") == []


def test_a_result_keeps_the_digest_of_its_request_and_the_first_digest_wins(stub):
    first = stub.PutResult(pb.PutResultRequest(instruction_id="d", result=b"R", request_digest=b"one"))
    again = stub.PutResults(pb.PutResultsRequest(results=[
        pb.PutResultRequest(instruction_id="d", result=b"S", request_digest=b"two")])).results[0]

    assert (first.already_stored, first.request_digest) == (False, b"one")
    assert (again.result, again.already_stored, again.request_digest) == (b"R", True, b"one")
    assert stub.GetResult(pb.GetResultRequest(instruction_id="d")).request_digest == b"one"
    (stored,) = stub.GetResults(pb.GetResultsRequest(instruction_ids=["d"])).results
    assert stored.request_digest == b"one"


def test_a_result_stored_without_a_digest_has_an_empty_one(stub):
    stub.PutResult(pb.PutResultRequest(instruction_id="n", result=b"R"))

    assert stub.GetResult(pb.GetResultRequest(instruction_id="n")).request_digest == b""
