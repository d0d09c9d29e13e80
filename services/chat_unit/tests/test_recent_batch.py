"""BatchListRecentMessages: many ListRecentMessages reads in one call, each succeeding or failing alone."""

import grpc
import pytest
from llmchatlinker.chat.v1 import chat_service_pb2 as pb

from services.chat_unit import service
from services.common.db import Database
from services.common.errors import error_info

INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _batch(client, *reads: pb.ListRecentMessagesRequest) -> list[pb.RecentMessages]:
    request = pb.BatchListRecentMessagesRequest(requests=reads)
    return list(client.stub.BatchListRecentMessages(request, timeout=10).results)


def _single_failure(client, read: pb.ListRecentMessagesRequest) -> pb.EntryFailure:
    """The EntryFailure that says what ListRecentMessages answers to this read."""
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.ListRecentMessages(read, timeout=10)
    error = caught.value
    return pb.EntryFailure(code=error.code().value[0], message=error.details(), reason=error_info(error).reason)


def _chat_of(client, *contents: str, user_ids=("u1",)) -> tuple[str, list[pb.Message]]:
    chat_id = client.create(user_ids=user_ids).chat_id
    return chat_id, client.append(chat_id, *contents) if contents else []


def test_batch_gives_each_read_what_the_single_call_gives(client):
    first, stored = _chat_of(client, *[f"a{n}" for n in range(8)], user_ids=["u1", "u2"])
    second, _ = _chat_of(client, "b0", "bb1", "bbb2")
    empty, _ = _chat_of(client)
    reads = [
        pb.ListRecentMessagesRequest(chat_id=second),
        pb.ListRecentMessagesRequest(chat_id=first, max_messages=3, member_user_id="u2"),
        pb.ListRecentMessagesRequest(chat_id=first, before_message_id=stored[5].message_id),
        pb.ListRecentMessagesRequest(chat_id=second, max_chars=6, member_user_id="u1"),
        pb.ListRecentMessagesRequest(chat_id=empty),
    ]

    results = _batch(client, *reads)

    assert [result.HasField("failure") for result in results] == [False] * 5
    assert [list(result.messages) for result in results] == [
        list(client.stub.ListRecentMessages(read, timeout=10).messages) for read in reads
    ]
    assert [message.content for message in results[1].messages] == ["a5", "a6", "a7"]


def test_batch_keeps_the_order_of_the_requests(client):
    chats = [_chat_of(client, f"only in chat {n}")[0] for n in range(4)]
    order = [chats[2], chats[0], chats[3], chats[0], chats[1]]

    results = _batch(client, *[pb.ListRecentMessagesRequest(chat_id=chat_id) for chat_id in order])

    assert [[message.chat_id for message in result.messages] for result in results] == [[c] for c in order]


def test_failing_reads_fail_alone_with_what_the_single_call_answers(client):
    member_chat, _ = _chat_of(client, "m0", "m1", user_ids=["u1", "u2"])
    other_chat, _ = _chat_of(client, "o0")
    deleted, _ = _chat_of(client, "gone", user_ids=["u1"])
    client.delete(deleted)
    reads = [
        pb.ListRecentMessagesRequest(chat_id=member_chat, member_user_id="u1"),
        pb.ListRecentMessagesRequest(chat_id=member_chat, member_user_id="stranger"),
        pb.ListRecentMessagesRequest(chat_id=other_chat),
        pb.ListRecentMessagesRequest(chat_id=UNKNOWN_ID, member_user_id="u1"),
        pb.ListRecentMessagesRequest(chat_id=deleted, member_user_id="u1"),
        pb.ListRecentMessagesRequest(chat_id=other_chat, max_messages=-1),
        pb.ListRecentMessagesRequest(chat_id=member_chat, max_messages=1, member_user_id="u2"),
    ]

    results = _batch(client, *reads)

    assert [[message.content for message in result.messages] for result in results] == [
        ["m0", "m1"], [], ["o0"], [], [], [], ["m1"],
    ]
    failures = {index: results[index].failure for index in (1, 3, 4, 5)}
    assert [(f.code, f.reason) for f in failures.values()] == [
        (grpc.StatusCode.PERMISSION_DENIED.value[0], "NOT_A_CHAT_MEMBER"),
        (grpc.StatusCode.NOT_FOUND.value[0], "CHAT_NOT_FOUND"),
        (grpc.StatusCode.NOT_FOUND.value[0], "CHAT_NOT_FOUND"),
        (INVALID.value[0], "INVALID_MAX_MESSAGES"),
    ]
    assert failures[1].message == f"user 'stranger' is not a member of chat '{member_chat}'"
    assert failures == {index: _single_failure(client, reads[index]) for index in failures}
    assert not any(results[index].HasField("failure") for index in (0, 2, 6))


def test_batch_runs_every_read_in_one_read_transaction(client, monkeypatch):
    chat_id, _ = _chat_of(client, "m0")
    reading = Database.reading
    opened = []

    def counting_reading(database):
        opened.append(database)
        return reading(database)

    monkeypatch.setattr(Database, "reading", counting_reading)

    results = _batch(client, *[pb.ListRecentMessagesRequest(chat_id=c) for c in (chat_id, UNKNOWN_ID, chat_id)])

    assert [result.HasField("failure") for result in results] == [False, True, False]
    assert len(opened) == 1


def test_batch_takes_one_to_a_thousand_reads(client):
    chat_id, _ = _chat_of(client, "m0")
    read = pb.ListRecentMessagesRequest(chat_id=chat_id)

    assert len(_batch(client, read)) == 1
    assert len(_batch(client, *[read] * 1000)) == 1000
    empty = client.fails("BatchListRecentMessages", pb.BatchListRecentMessagesRequest(), INVALID, "MISSING_REQUESTS")
    assert empty.details() == "requests must not be empty"
    too_many = pb.BatchListRecentMessagesRequest(requests=[read] * 1001)
    error = client.fails("BatchListRecentMessages", too_many, INVALID, "TOO_MANY_REQUESTS")
    assert error.details() == "at most 1,000 requests per call (got 1,001)"


class _BrokenStore:
    """A store whose database fails under it, as a dropped connection would."""

    def is_live(self, chat_id: str) -> bool:
        raise ConnectionError("connection lost")


def test_a_fault_that_is_not_a_broken_rule_fails_the_whole_batch():
    reads = [service.RecentRead("c1", "", 0, 0, ""), service.RecentRead("c2", "", -1, 0, "")]

    with pytest.raises(ConnectionError):
        service.batch_list_recent_messages(_BrokenStore(), reads)
