"""Concurrent callers: one result wins, alone or in batches, and twins of one request apply once."""

import random
import time
from concurrent import futures

import grpc
import pytest

from llmchatlinker.db.v1 import db_service_pb2 as pb
from services.common.db import Database
from services.db_unit import store
from testkit.units import together


def test_racing_puts_of_one_result_keep_exactly_one(stub):
    requests = [pb.PutResultRequest(instruction_id="ins-1", result=f"writer {index}".encode()) for index in range(10)]

    outcomes = together(stub.PutResult, requests)

    assert all(isinstance(outcome, pb.PutResultResponse) for outcome in outcomes), outcomes
    assert sorted(outcome.already_stored for outcome in outcomes) == [False] + [True] * 9
    stored = stub.GetResult(pb.GetResultRequest(instruction_id="ins-1")).result
    assert {outcome.result for outcome in outcomes} == {stored}


def test_racing_batches_of_the_same_ids_keep_exactly_one_result_each(stub):
    # Eight batches put the same ids, each in its own order, beside lone PutResults: none
    # deadlocks (PostgreSQL), and every id ends with one stored result, the one every answer names.
    pool = [f"ins-{index}" for index in range(60)]
    shuffler = random.Random(7)
    requests = [
        pb.PutResultsRequest(
            results=[pb.PutResultRequest(instruction_id=i, result=f"{i} from {writer}".encode()) for i in ids]
        )
        for writer, ids in enumerate(shuffler.sample(pool, len(pool)) for _ in range(8))
    ]
    requests += [pb.PutResultRequest(instruction_id=i, result=f"{i} alone".encode()) for i in pool[:4]]

    def put(request, timeout):
        method = stub.PutResults if isinstance(request, pb.PutResultsRequest) else stub.PutResult
        return method(request, timeout=timeout)

    outcomes = together(put, requests)

    assert not [outcome for outcome in outcomes if isinstance(outcome, grpc.RpcError)], outcomes
    found = stub.GetResults(pb.GetResultsRequest(instruction_ids=pool)).results
    stored = {result.instruction_id: result.result for result in found}
    assert sorted(stored) == sorted(pool)
    answers = [
        (entry.instruction_id, answer)
        for request, outcome in zip(requests, outcomes)
        for entry, answer in zip(getattr(request, "results", [request]), getattr(outcome, "results", [outcome]))
    ]
    assert len(answers) == 8 * 60 + 4
    assert all(answer.result == stored[instruction_id] for instruction_id, answer in answers)
    assert sorted(instruction_id for instruction_id, answer in answers if not answer.already_stored) == sorted(pool)


# PostgreSQL only: on SQLite a writer holds the whole database, so batches cannot interleave.
@pytest.mark.parametrize("database_target", ["postgresql"], indirect=True)
def test_batches_let_go_together_after_a_writer_held_them_up_do_not_deadlock(stub, settings):
    # On PostgreSQL each batch inserts row by row and waits on a row that another uncommitted
    # batch holds; batches in different orders could each wait on the other. Holding one id
    # open makes them all pile up mid-insert, then lets them race at once. Each then finds the
    # held result, which was committed after its insert began.
    pool = [f"ins-{index:03}" for index in range(200)]
    shuffler = random.Random(11)
    requests = [
        pb.PutResultsRequest(results=[pb.PutResultRequest(instruction_id=i, result=b"batch") for i in ids])
        for ids in (shuffler.sample(pool, len(pool)) for _ in range(6))
    ]
    database = Database(settings.database_url, settings.database_schema)
    try:
        with futures.ThreadPoolExecutor(max_workers=len(requests)) as senders:
            with database.writing() as holder:
                store.Results(holder).put({pool[100]: b"held"})
                calls = [senders.submit(stub.PutResults, request, timeout=60) for request in requests]
                _wait_for_waiting_transactions(database, len(requests))
            outcomes = [call.exception() or call.result() for call in calls]
    finally:
        database.dispose()

    assert all(isinstance(outcome, pb.PutResultsResponse) for outcome in outcomes), outcomes
    stored = {found.instruction_id for found in stub.GetResults(pb.GetResultsRequest(instruction_ids=pool)).results}
    assert stored == set(pool)
    held = [
        (answer.result, answer.already_stored)
        for request, outcome in zip(requests, outcomes)
        for entry, answer in zip(request.results, outcome.results)
        if entry.instruction_id == pool[100]
    ]
    assert held == [(b"held", True)] * len(requests)


def _wait_for_waiting_transactions(database: Database, count: int, seconds: float = 10) -> None:
    """Until `count` transactions wait on another's row (other tests' waits may count too)."""
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
    deadline = time.monotonic() + seconds
    with database.engine.connect() as connection:
        while connection.exec_driver_sql(waiting).scalar_one() < count and time.monotonic() < deadline:
            connection.rollback()
            time.sleep(0.02)


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
