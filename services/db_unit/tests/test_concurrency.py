"""Concurrent callers: one result wins, and twins of one request apply once."""

import threading
from concurrent import futures

import grpc

from llmchatlinker.db.v1 import db_service_pb2 as pb


def together(method, requests: list) -> list:
    """Sends every request at once, each from its own thread; each outcome is the response or the error."""
    start = threading.Barrier(len(requests))

    def call(request):
        start.wait()
        try:
            return method(request, timeout=60)
        except grpc.RpcError as error:
            return error

    with futures.ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(call, requests))


def test_racing_puts_of_one_result_keep_exactly_one(stub):
    requests = [pb.PutResultRequest(instruction_id="ins-1", result=f"writer {index}".encode()) for index in range(10)]

    outcomes = together(stub.PutResult, requests)

    assert all(isinstance(outcome, pb.PutResultResponse) for outcome in outcomes), outcomes
    assert sorted(outcome.already_stored for outcome in outcomes) == [False] + [True] * 9
    stored = stub.GetResult(pb.GetResultRequest(instruction_id="ins-1")).result
    assert {outcome.result for outcome in outcomes} == {stored}


def test_concurrent_twins_of_one_create_record_it_once(stub):
    request = pb.CreateRecordRequest(request_id="rec-1", user_id="user-1", instruction="CHAT_CREATE")

    outcomes = together(stub.CreateRecord, [request] * 10)

    assert all(isinstance(outcome, pb.CreateRecordResponse) for outcome in outcomes), outcomes
    assert len({outcome.record.record_id for outcome in outcomes}) == 1
    assert len(stub.ListRecords(pb.ListRecordsRequest(user_id="user-1")).records) == 1


def test_concurrent_twins_of_one_delete_all_answer_the_first_count(stub):
    for index in range(3):
        stub.CreateRecord(pb.CreateRecordRequest(user_id="user-1", instruction=f"STEP_{index}"))

    request = pb.DeleteRecordsRequest(request_id="del-1", user_id="user-1")
    outcomes = together(stub.DeleteRecords, [request] * 10)

    assert [getattr(outcome, "deleted_count", outcome) for outcome in outcomes] == [3] * 10


def test_fifty_concurrent_records_are_all_kept(stub):
    requests = [pb.CreateRecordRequest(user_id="user-1", instruction=f"STEP_{index}") for index in range(50)]

    outcomes = together(stub.CreateRecord, requests)

    assert all(isinstance(outcome, pb.CreateRecordResponse) for outcome in outcomes), outcomes
    listed = stub.ListRecords(pb.ListRecordsRequest(user_id="user-1", page_size=100)).records
    assert sorted(record.instruction for record in listed) == sorted(request.instruction for request in requests)
