"""CreateRecord, ListRecords and DeleteRecords: field limits, per-user paging and soft deletion."""

import uuid

import grpc
import pytest

from llmchatlinker.db.v1 import db_service_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def listed(stub, user_id: str, **paging) -> list[pb.Record]:
    return list(stub.ListRecords(pb.ListRecordsRequest(user_id=user_id, **paging)).records)


def test_create_record_returns_the_stored_record(stub, record):
    created = record("user-1", "CHAT_CREATE", chat_id="chat-9", instruction_id="ins-1", outcome="OK")

    assert uuid.UUID(created.record_id).version == 4
    assert (created.user_id, created.chat_id, created.instruction) == ("user-1", "chat-9", "CHAT_CREATE")
    assert (created.instruction_id, created.outcome) == ("ins-1", "OK")
    assert created.create_time.seconds > 0
    assert created.update_time == created.create_time
    assert listed(stub, "user-1") == [created]


def test_create_record_accepts_the_longest_allowed_fields(record):
    created = record("u" * 128, "i" * 64, chat_id="c" * 128, instruction_id="n" * 128, outcome="o" * 32)

    assert (len(created.user_id), len(created.instruction), len(created.outcome)) == (128, 64, 32)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"user_id": ""}, "MISSING_USER_ID"),
        ({"user_id": "u" * 129}, "USER_ID_TOO_LONG"),
        ({"instruction": ""}, "MISSING_INSTRUCTION"),
        ({"instruction": "i" * 65}, "INSTRUCTION_TOO_LONG"),
        ({"chat_id": "c" * 129}, "CHAT_ID_TOO_LONG"),
        ({"instruction_id": "n" * 129}, "INSTRUCTION_ID_TOO_LONG"),
        ({"outcome": "o" * 33}, "OUTCOME_TOO_LONG"),
        ({"request_id": "r" * 129}, "REQUEST_ID_TOO_LONG"),
    ],
)
def test_create_record_rejects_fields_past_their_limits(stub, fails, fields, reason):
    request = pb.CreateRecordRequest(**{"user_id": "user-1", "instruction": "CHAT_CREATE", **fields})

    fails(INVALID, reason, stub.CreateRecord, request)
    assert listed(stub, "user-1") == []


def test_repeated_request_id_records_once(stub):
    request = pb.CreateRecordRequest(request_id="rec-1", user_id="user-1", instruction="CHAT_CREATE")

    first = stub.CreateRecord(request).record
    again = stub.CreateRecord(request).record

    assert again == first
    assert listed(stub, "user-1") == [first]


def test_list_records_shows_only_the_users_records_oldest_first(stub, record):
    mine = [record("user-1", f"STEP_{index}") for index in range(3)]
    record("user-2", "OTHER")

    assert listed(stub, "user-1") == mine


def test_list_records_of_an_unknown_user_is_empty(stub):
    response = stub.ListRecords(pb.ListRecordsRequest(user_id="nobody"))

    assert (list(response.records), response.next_page_token) == ([], "")


def test_list_records_needs_a_user_id(stub, fails):
    fails(INVALID, "MISSING_USER_ID", stub.ListRecords, pb.ListRecordsRequest())


@pytest.mark.parametrize(("page_size", "pages"), [(1, 5), (2, 3), (5, 1), (0, 1), (5000, 1)])
def test_list_records_tokens_walk_every_record(stub, record, page_size, pages):
    created = [record("user-1", f"STEP_{index}") for index in range(5)]
    record("user-2", "OTHER")
    seen, token, count = [], "", 0
    while True:
        response = stub.ListRecords(pb.ListRecordsRequest(user_id="user-1", page_size=page_size, page_token=token))
        seen += response.records
        count += 1
        token = response.next_page_token
        if not token:
            break

    assert (seen, count) == (created, pages)


def test_list_records_page_size_zero_means_50(stub, record):
    for index in range(51):
        record("user-1", f"STEP_{index}")

    response = stub.ListRecords(pb.ListRecordsRequest(user_id="user-1"))

    assert (len(response.records), bool(response.next_page_token)) == (50, True)


def test_list_records_rejects_a_negative_page_size(stub, fails):
    fails(INVALID, "INVALID_PAGE_SIZE", stub.ListRecords, pb.ListRecordsRequest(user_id="user-1", page_size=-5))


@pytest.mark.parametrize("token", ["garbage", "djE6eHl6"])
def test_list_records_rejects_a_token_it_did_not_give_out(stub, fails, token):
    request = pb.ListRecordsRequest(user_id="user-1", page_token=token)

    fails(INVALID, "INVALID_PAGE_TOKEN", stub.ListRecords, request)


def test_delete_records_hides_all_of_the_users_records_and_counts_them(stub, record):
    for index in range(3):
        record("user-1", f"STEP_{index}")
    other = record("user-2", "OTHER")

    deleted = stub.DeleteRecords(pb.DeleteRecordsRequest(user_id="user-1")).deleted_count

    assert deleted == 3
    assert listed(stub, "user-1") == []
    assert listed(stub, "user-2") == [other]


def test_delete_records_again_finds_nothing_left(stub, record):
    record("user-1")
    stub.DeleteRecords(pb.DeleteRecordsRequest(user_id="user-1"))

    assert stub.DeleteRecords(pb.DeleteRecordsRequest(user_id="user-1")).deleted_count == 0


def test_delete_records_of_an_unknown_user_deletes_none(stub):
    assert stub.DeleteRecords(pb.DeleteRecordsRequest(user_id="nobody")).deleted_count == 0


def test_delete_records_with_a_repeated_request_id_answers_the_first_count(stub, record):
    record("user-1")
    record("user-1")
    request = pb.DeleteRecordsRequest(request_id="del-1", user_id="user-1")

    first = stub.DeleteRecords(request).deleted_count
    later = record("user-1")
    again = stub.DeleteRecords(request).deleted_count

    assert (first, again) == (2, 2)
    assert listed(stub, "user-1") == [later]


def test_records_made_after_a_delete_are_listed(stub, record):
    record("user-1", "OLD")
    stub.DeleteRecords(pb.DeleteRecordsRequest(user_id="user-1"))

    fresh = record("user-1", "NEW")

    assert listed(stub, "user-1") == [fresh]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"user_id": ""}, "MISSING_USER_ID"), ({"user_id": "x", "request_id": "r" * 129}, "REQUEST_ID_TOO_LONG")],
)
def test_delete_records_rejects_invalid_requests(stub, fails, fields, reason):
    fails(INVALID, reason, stub.DeleteRecords, pb.DeleteRecordsRequest(**fields))
