"""BatchAppendMessages: many AppendMessages in one transaction, each succeeding or failing alone."""

import collections
import random
import threading

import grpc
import pytest
from llmchatlinker.chat.v1 import chat_service_pb2 as pb

from services.common.db import Database
from services.common.errors import error_info

INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _append(chat_id: str, *contents: str, request_id: str = "", role=pb.MESSAGE_ROLE_USER) -> pb.AppendMessagesRequest:
    messages = [pb.NewMessage(user_id="u1", content=content, role=role) for content in contents]
    return pb.AppendMessagesRequest(request_id=request_id, chat_id=chat_id, messages=messages)


def _batch(client, *appends: pb.AppendMessagesRequest) -> list[pb.AppendedMessages]:
    request = pb.BatchAppendMessagesRequest(requests=appends)
    return list(client.stub.BatchAppendMessages(request, timeout=30).results)


def _contents(client, chat_id: str) -> list[str]:
    return [message.content for message in client.get(chat_id).messages]


def _single_failure(client, append: pb.AppendMessagesRequest) -> pb.EntryFailure:
    """The EntryFailure that says what AppendMessages answers to this append."""
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.AppendMessages(append, timeout=10)
    error = caught.value
    return pb.EntryFailure(code=error.code().value[0], message=error.details(), reason=error_info(error).reason)


def test_batch_appends_to_several_chats_as_the_single_calls_would(client):
    singles = [client.create().chat_id for _ in range(3)]
    batched = [client.create().chat_id for _ in range(3)]
    for n, chat_id in enumerate(singles):
        client.append(chat_id, f"question {n}", f"answer {n}")

    results = _batch(client, *[_append(chat_id, f"question {n}", f"answer {n}") for n, chat_id in enumerate(batched)])

    assert [result.HasField("failure") for result in results] == [False] * 3
    for single, chat_id, result in zip(singles, batched, results):
        assert _contents(client, chat_id) == _contents(client, single)
        assert list(result.messages) == list(client.get(chat_id).messages)
        assert client.get(chat_id).chat.update_time == result.messages[0].create_time


def test_appends_to_one_chat_keep_the_order_of_the_requests(client):
    chat_id, other = client.create().chat_id, client.create().chat_id

    _batch(client, _append(chat_id, "q1", "a1"), _append(other, "x"), _append(chat_id, "q2", "a2"))

    assert _contents(client, chat_id) == ["q1", "a1", "q2", "a2"]
    assert _contents(client, other) == ["x"]


def test_a_request_id_answered_before_gives_the_stored_response_and_appends_nothing(client):
    chat_id = client.create().chat_id
    first = client.append(chat_id, "once", request_id="r-1")

    results = _batch(
        client,
        _append(chat_id, "once again", request_id="r-1"),
        _append(chat_id, "twice", request_id="r-2"),
        _append(chat_id, "twice again", request_id="r-2"),
    )

    assert list(results[0].messages) == first
    assert list(results[2].messages) == list(results[1].messages)
    assert _contents(client, chat_id) == ["once", "twice"]
    # The single call answers what the batch stored, and the batch what it stored itself.
    assert client.append(chat_id, "later", request_id="r-2") == list(results[1].messages)
    assert list(_batch(client, _append(chat_id, "later", request_id="r-2"))[0].messages) == list(results[1].messages)
    assert _contents(client, chat_id) == ["once", "twice"]


def test_failing_appends_fail_alone_with_what_the_single_call_answers_and_leave_nothing(client):
    chat_id = client.create().chat_id
    deleted = client.create().chat_id
    client.delete(deleted)
    appends = [
        _append(chat_id, "first", request_id="ok-1"),
        _append(UNKNOWN_ID, "lost", request_id="bad-1"),
        _append(deleted, "gone", request_id="bad-2"),
        _append(chat_id, "no role", request_id="bad-3", role=pb.MESSAGE_ROLE_UNSPECIFIED),
        _append(chat_id, "long id", request_id="x" * 129),
        _append(chat_id, "last", request_id="ok-2"),
    ]

    results = _batch(client, *appends)

    failures = {index: results[index].failure for index in (1, 2, 3, 4)}
    assert [(f.code, f.reason) for f in failures.values()] == [
        (grpc.StatusCode.NOT_FOUND.value[0], "CHAT_NOT_FOUND"),
        (grpc.StatusCode.NOT_FOUND.value[0], "CHAT_NOT_FOUND"),
        (INVALID.value[0], "INVALID_ROLE"),
        (INVALID.value[0], "INVALID_REQUEST_ID"),
    ]
    assert failures == {index: _single_failure(client, appends[index]) for index in failures}
    assert not any(results[index].messages for index in failures)
    assert not any(results[index].HasField("failure") for index in (0, 5))
    assert _contents(client, chat_id) == ["first", "last"]
    # The failed appends claimed nothing: their request ids apply when used again.
    assert [m.content for m in client.append(chat_id, "retried", request_id="bad-1")] == ["retried"]
    assert [m.content for m in _batch(client, _append(chat_id, "again", request_id="bad-3"))[0].messages] == ["again"]
    assert _contents(client, chat_id) == ["first", "last", "retried", "again"]


def test_a_request_id_whose_first_append_failed_is_applied_by_the_next(client):
    chat_id = client.create().chat_id

    results = _batch(client, _append(UNKNOWN_ID, "lost", request_id="r"), _append(chat_id, "found", request_id="r"))

    assert results[0].failure.reason == "CHAT_NOT_FOUND"
    assert [m.content for m in results[1].messages] == ["found"]
    assert client.append(chat_id, "again", request_id="r") == list(results[1].messages)


def test_batch_takes_one_to_a_thousand_appends(client):
    chat_id = client.create().chat_id

    assert len(_batch(client, *[_append(chat_id, f"m{n}") for n in range(1000)])) == 1000
    empty = client.fails("BatchAppendMessages", pb.BatchAppendMessagesRequest(), INVALID, "MISSING_REQUESTS")
    assert empty.details() == "requests must not be empty"
    too_many = pb.BatchAppendMessagesRequest(requests=[_append(chat_id, "m")] * 1001)
    error = client.fails("BatchAppendMessages", too_many, INVALID, "TOO_MANY_REQUESTS")
    assert error.details() == "at most 1,000 requests per call (got 1,001)"
    assert len(client.get(chat_id, page_size=1000).messages) == 1000


def test_batch_runs_every_append_in_one_transaction(client, monkeypatch):
    chats = [client.create().chat_id for _ in range(3)]
    opened = []
    for name in ("transaction", "writing", "reading"):
        original = getattr(Database, name)
        monkeypatch.setattr(Database, name, lambda database, _o=original, _n=name: opened.append(_n) or _o(database))

    results = _batch(client, *[_append(c, "m", request_id=f"r{c}") for c in chats], _append(UNKNOWN_ID, "m"))

    assert [result.HasField("failure") for result in results] == [False, False, False, True]
    assert opened == ["writing"]


def test_concurrent_overlapping_batches_apply_each_request_id_once(start_server, open_client):
    server = start_server()
    clients = [open_client(server) for _ in range(4)]
    chats = [clients[0].create().chat_id for _ in range(5)]
    # Each request id belongs to one chat; its content names it, so the chat shows how often it applied.
    chat_of = {f"r{n:03}": chats[n % len(chats)] for n in range(60)}
    answers = collections.defaultdict(list)
    errors = []

    def send(client, seed: int):
        rng = random.Random(seed)
        try:
            for _ in range(6):
                ids = rng.sample(sorted(chat_of), 20)
                results = _batch(client, *[_append(chat_of[r], r, r + "!", request_id=r) for r in ids])
                for request_id, result in zip(ids, results):
                    answers[request_id].append(list(result.messages))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=send, args=(clients[n % 4], n)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for request_id, chat_id in chat_of.items():
        stored = clients[0].append(chat_id, "never applied", request_id=request_id)
        assert all(answer == stored for answer in answers[request_id]), request_id
    for chat_id in chats:
        contents = [c for c in _contents_all(clients[0], chat_id)]
        expected = sorted(r for r, c in chat_of.items() if c == chat_id)
        assert sorted(contents[::2]) == expected
        assert contents[1::2] == [r + "!" for r in contents[::2]]


def _contents_all(client, chat_id: str) -> list[str]:
    return [message.content for message in client.get(chat_id, page_size=1000).messages]
