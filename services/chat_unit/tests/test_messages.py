"""AppendMessages, GetMessage, GetChat's message pages and ListRecentMessages."""

import concurrent.futures

import grpc
import pytest
import sqlalchemy as sa
from llmchatlinker.chat.v1 import chat_service_pb2 as pb

from services.chat_unit import store
from services.common.db import Database
from services.common.errors import error_info

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _append_request(chat_id: str, *messages: pb.NewMessage) -> pb.AppendMessagesRequest:
    return pb.AppendMessagesRequest(chat_id=chat_id, messages=messages)


def test_append_messages_stores_them_in_order_and_touches_the_chat(client):
    chat = client.create()
    turn = [
        pb.NewMessage(user_id="u1", content="What is 2+2?", role=pb.MESSAGE_ROLE_USER),
        pb.NewMessage(user_id="u1", llm_id="llm-9", content="4", role=pb.MESSAGE_ROLE_ASSISTANT),
    ]

    stored = client.stub.AppendMessages(_append_request(chat.chat_id, *turn)).messages

    assert [(m.content, m.role, m.user_id, m.llm_id) for m in stored] == [
        ("What is 2+2?", pb.MESSAGE_ROLE_USER, "u1", ""),
        ("4", pb.MESSAGE_ROLE_ASSISTANT, "u1", "llm-9"),
    ]
    assert {m.chat_id for m in stored} == {chat.chat_id}
    assert len({m.message_id for m in stored}) == 2
    response = client.get(chat.chat_id)
    assert list(response.messages) == list(stored)
    assert response.chat.update_time == stored[0].create_time


@pytest.mark.parametrize("count", [0, 11])
def test_append_messages_takes_one_to_ten_messages(client, count):
    chat_id = client.create().chat_id
    request = _append_request(chat_id, *[pb.NewMessage(content="m", role=pb.MESSAGE_ROLE_USER)] * count)

    client.fails("AppendMessages", request, INVALID, "INVALID_MESSAGE_COUNT")


def test_append_messages_rejects_a_message_without_a_role_and_stores_none_of_the_batch(client):
    chat_id = client.create().chat_id
    valid = pb.NewMessage(content="ok", role=pb.MESSAGE_ROLE_USER)
    request = _append_request(chat_id, valid, pb.NewMessage(content="?"))

    client.fails("AppendMessages", request, INVALID, "INVALID_ROLE")
    assert client.get(chat_id).messages == []


def test_append_messages_takes_a_million_characters_and_no_more(client):
    chat_id = client.create().chat_id

    assert len(client.append(chat_id, "x" * 1_000_000)[0].content) == 1_000_000
    request = _append_request(chat_id, pb.NewMessage(content="x" * 1_000_001, role=pb.MESSAGE_ROLE_USER))
    client.fails("AppendMessages", request, INVALID, "CONTENT_TOO_LONG")


def test_append_messages_rejects_nul_characters_on_every_database(client):
    chat_id = client.create().chat_id
    request = _append_request(chat_id, pb.NewMessage(content="a\x00b", role=pb.MESSAGE_ROLE_USER))

    client.fails("AppendMessages", request, INVALID, "INVALID_CONTENT")


def test_append_messages_to_an_unknown_chat_is_not_found(client):
    request = _append_request(UNKNOWN_ID, pb.NewMessage(content="hi", role=pb.MESSAGE_ROLE_USER))

    error = client.fails("AppendMessages", request, NOT_FOUND, "CHAT_NOT_FOUND")
    assert UNKNOWN_ID in error.details()


def test_repeated_append_request_appends_once(client):
    chat_id = client.create().chat_id

    first = client.append(chat_id, "question", "answer", request_id="turn-1")
    again = client.append(chat_id, "question", "answer", request_id="turn-1")

    assert again == first
    assert list(client.get(chat_id).messages) == first


def test_get_message_returns_the_stored_message(client):
    chat_id = client.create().chat_id
    stored = client.append(chat_id, "one", "two")[1]

    assert client.stub.GetMessage(pb.GetMessageRequest(message_id=stored.message_id)).message == stored


def test_get_message_of_an_unknown_id_is_not_found(client):
    error = client.fails("GetMessage", pb.GetMessageRequest(message_id=UNKNOWN_ID), NOT_FOUND, "MESSAGE_NOT_FOUND")

    assert UNKNOWN_ID in error.details()
    client.fails("GetMessage", pb.GetMessageRequest(), INVALID, "INVALID_MESSAGE_ID")


def test_get_chat_pages_messages_from_the_newest_page_back(client):
    chat_id = client.create().chat_id
    client.append(chat_id, *[f"m{n}" for n in range(7)])

    pages, token = [], ""
    while True:
        response = client.get(chat_id, page_size=3, page_token=token)
        pages.append([message.content for message in response.messages])
        token = response.next_message_page_token
        if not token:
            break

    assert pages == [["m4", "m5", "m6"], ["m1", "m2", "m3"], ["m0"]]


def test_get_chat_gives_no_token_when_the_page_holds_the_oldest_message(client):
    chat_id = client.create().chat_id
    client.append(chat_id, "a", "b", "c")

    response = client.get(chat_id, page_size=3)

    assert [m.content for m in response.messages] == ["a", "b", "c"]
    assert response.next_message_page_token == ""


def test_get_chat_pages_a_hundred_messages_by_default(client):
    chat_id = client.create().chat_id
    for batch in range(11):
        client.append(chat_id, *[f"m{batch * 10 + n}" for n in range(10)])

    first = client.get(chat_id)
    rest = client.get(chat_id, page_token=first.next_message_page_token)

    assert [m.content for m in first.messages] == [f"m{n}" for n in range(10, 110)]
    assert [m.content for m in rest.messages] == [f"m{n}" for n in range(10)]
    assert rest.next_message_page_token == ""


def test_list_recent_messages_returns_the_newest_oldest_first(client):
    chat_id = client.create().chat_id
    client.append(chat_id, *[f"m{n}" for n in range(6)])

    assert client.recent(chat_id) == [f"m{n}" for n in range(6)]
    assert client.recent(chat_id, max_messages=3) == ["m3", "m4", "m5"]
    assert client.recent(chat_id, max_messages=20_000) == [f"m{n}" for n in range(6)]


def test_list_recent_messages_before_a_message_leaves_it_and_newer_ones_out(client):
    chat_id = client.create().chat_id
    stored = client.append(chat_id, *[f"m{n}" for n in range(6)])

    assert client.recent(chat_id, before_message_id=stored[4].message_id) == ["m0", "m1", "m2", "m3"]
    assert client.recent(chat_id, before_message_id=stored[4].message_id, max_messages=2) == ["m2", "m3"]
    assert client.recent(chat_id, before_message_id=stored[0].message_id) == []


def test_list_recent_messages_keeps_within_the_character_budget_without_gaps(client):
    chat_id = client.create().chat_id
    client.append(chat_id, "a", "bbbbbb", "cc", "d")

    assert client.recent(chat_id, max_chars=3) == ["cc", "d"]
    assert client.recent(chat_id, max_chars=8) == ["cc", "d"]
    assert client.recent(chat_id, max_chars=9) == ["bbbbbb", "cc", "d"]
    assert client.recent(chat_id, max_chars=10) == ["a", "bbbbbb", "cc", "d"]
    assert client.recent(chat_id, max_chars=10, max_messages=2) == ["cc", "d"]


def test_list_recent_messages_always_includes_the_newest_message(client):
    chat_id = client.create().chat_id
    client.append(chat_id, "old", "a rather long newest message")

    assert client.recent(chat_id, max_chars=1) == ["a rather long newest message"]


def test_list_recent_messages_rejects_negative_budgets(client):
    chat_id = client.create().chat_id

    request = pb.ListRecentMessagesRequest(chat_id=chat_id, max_messages=-1)
    client.fails("ListRecentMessages", request, INVALID, "INVALID_MAX_MESSAGES")
    request = pb.ListRecentMessagesRequest(chat_id=chat_id, max_chars=-1)
    client.fails("ListRecentMessages", request, INVALID, "INVALID_MAX_CHARS")


def test_list_recent_messages_of_an_unknown_chat_is_not_found(client):
    client.fails("ListRecentMessages", pb.ListRecentMessagesRequest(chat_id=UNKNOWN_ID), NOT_FOUND, "CHAT_NOT_FOUND")


def test_list_recent_messages_before_an_unknown_message_is_not_found(client):
    chat_id = client.create().chat_id
    request = pb.ListRecentMessagesRequest(chat_id=chat_id, before_message_id=UNKNOWN_ID)

    client.fails("ListRecentMessages", request, NOT_FOUND, "MESSAGE_NOT_FOUND")


def test_list_recent_messages_before_a_message_of_another_chat_is_invalid(client):
    chat_id = client.create().chat_id
    elsewhere = client.append(client.create().chat_id, "elsewhere")[0]
    request = pb.ListRecentMessagesRequest(chat_id=chat_id, before_message_id=elsewhere.message_id)

    client.fails("ListRecentMessages", request, INVALID, "MESSAGE_NOT_IN_CHAT")


def test_list_recent_messages_for_a_member_returns_the_context(client):
    chat_id = client.create(user_ids=["u1", "u2"]).chat_id
    client.append(chat_id, "m0", "m1", "m2")

    assert client.recent(chat_id, member_user_id="u2") == ["m0", "m1", "m2"]
    assert client.recent(chat_id, member_user_id="u1", max_messages=2) == ["m1", "m2"]


def test_list_recent_messages_for_a_non_member_is_denied_naming_the_user_and_the_chat(client):
    chat_id = client.create(user_ids=["u1", "u2"]).chat_id
    client.append(chat_id, "private")
    request = pb.ListRecentMessagesRequest(chat_id=chat_id, member_user_id="stranger")

    error = client.fails("ListRecentMessages", request, DENIED, "NOT_A_CHAT_MEMBER")

    assert error.details() == f"user 'stranger' is not a member of chat '{chat_id}'"
    assert dict(error_info(error).metadata) == {"userId": "stranger", "chatId": chat_id}


def test_list_recent_messages_tells_a_non_member_nothing_about_the_anchor_message(client):
    chat_id = client.create(user_ids=["u1"]).chat_id
    request = pb.ListRecentMessagesRequest(chat_id=chat_id, member_user_id="stranger", before_message_id=UNKNOWN_ID)

    client.fails("ListRecentMessages", request, DENIED, "NOT_A_CHAT_MEMBER")


def test_list_recent_messages_for_a_member_of_an_unknown_chat_is_not_found(client):
    request = pb.ListRecentMessagesRequest(chat_id=UNKNOWN_ID, member_user_id="u1")

    client.fails("ListRecentMessages", request, NOT_FOUND, "CHAT_NOT_FOUND")


def test_list_recent_messages_for_a_member_of_a_deleted_chat_is_not_found(client):
    chat_id = client.create(user_ids=["u1"]).chat_id
    client.append(chat_id, "gone")
    client.delete(chat_id)

    for member_user_id in ("u1", "stranger"):
        request = pb.ListRecentMessagesRequest(chat_id=chat_id, member_user_id=member_user_id)
        client.fails("ListRecentMessages", request, NOT_FOUND, "CHAT_NOT_FOUND")


@pytest.mark.parametrize("member_user_id", ["  ", "nul\x00", "u" * 129])
def test_list_recent_messages_rejects_a_malformed_member_user_id(client, member_user_id):
    chat_id = client.create().chat_id
    request = pb.ListRecentMessagesRequest(chat_id=chat_id, member_user_id=member_user_id)

    client.fails("ListRecentMessages", request, INVALID, "INVALID_USER_ID")


def test_list_recent_messages_without_a_member_user_id_checks_no_membership(client):
    chat_id = client.create(user_ids=["u1"]).chat_id
    client.append(chat_id, "m0", "m1")
    deleted = client.create(user_ids=["u1"]).chat_id
    client.delete(deleted)

    assert client.recent(chat_id, member_user_id="") == ["m0", "m1"]
    client.fails("ListRecentMessages", pb.ListRecentMessagesRequest(chat_id=deleted), NOT_FOUND, "CHAT_NOT_FOUND")


def test_tail_of_a_chat_is_read_through_the_chat_seq_index(server, database_target):
    database = Database(database_target.url, database_target.schema)
    query = store.tail_query("some-chat", 1000, 5).compile(database.engine, compile_kwargs={"literal_binds": True})
    try:
        with database.transaction() as session:
            if database.is_sqlite:
                plan = " ".join(str(row[-1]) for row in session.execute(sa.text(f"EXPLAIN QUERY PLAN {query}")))
                assert "ix_messages_chat_id_seq" in plan and "TEMP B-TREE" not in plan, plan
            else:
                session.execute(sa.text("SET LOCAL enable_seqscan = off"))
                plan = " ".join(row[0] for row in session.execute(sa.text(f"EXPLAIN {query}")))
                assert "Index Scan Backward using ix_messages_chat_id_seq" in plan and "Sort" not in plan, plan
    finally:
        database.dispose()


def test_recent_messages_of_a_long_chat_are_its_newest(client):
    chat_id = client.create().chat_id
    batches = [[f"b{batch}-{n}" for n in range(10)] for batch in range(199)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda contents: client.append(chat_id, *contents), batches))
    client.append(chat_id, *[f"last-{n}" for n in range(10)])

    assert client.recent(chat_id, max_messages=5) == [f"last-{n}" for n in range(5, 10)]
    newest_page = client.get(chat_id, page_size=1000)
    older = client.get(chat_id, page_size=1000, page_token=newest_page.next_message_page_token)
    assert len(newest_page.messages) + len(older.messages) == 2000
    assert older.next_message_page_token == ""
