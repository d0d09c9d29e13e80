"""CreateChat, UpdateChat, DeleteChat, GetChat and ListChats as a caller sees them."""

import grpc
import pytest
from llmchatlinker.chat.v1 import chat_service_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def test_create_chat_trims_the_title_and_keeps_each_member_once(client):
    chat = client.create(title="  Weekend plans \n", user_ids=["u2", "u1", "u2", "u3", "u1"])

    assert chat.title == "Weekend plans"
    assert list(chat.user_ids) == ["u2", "u1", "u3"]
    assert len(chat.chat_id) == 36
    assert chat.create_time == chat.update_time
    assert client.get(chat.chat_id).chat == chat


def test_create_chat_accepts_the_longest_title_and_most_members(client):
    chat = client.create(title="t" * 200, user_ids=[f"user-{n}" for n in range(100)] + ["user-0"])

    assert len(chat.title) == 200
    assert len(chat.user_ids) == 100


@pytest.mark.parametrize("title", ["", "   ", "t" * 201, "nul\x00"])
def test_create_chat_rejects_a_title_out_of_bounds(client, title):
    client.fails("CreateChat", pb.CreateChatRequest(title=title, user_ids=["u1"]), INVALID, "INVALID_TITLE")


@pytest.mark.parametrize("user_ids", [[], [f"u{n}" for n in range(101)]])
def test_create_chat_rejects_too_few_or_too_many_members(client, user_ids):
    client.fails("CreateChat", pb.CreateChatRequest(title="t", user_ids=user_ids), INVALID, "INVALID_USER_IDS")


@pytest.mark.parametrize("blank", ["", "  "])
def test_create_chat_rejects_a_blank_member_id(client, blank):
    request = pb.CreateChatRequest(title="t", user_ids=["u1", blank])
    client.fails("CreateChat", request, INVALID, "INVALID_USER_ID")


def test_create_chat_rejects_an_overlong_request_id(client):
    request = pb.CreateChatRequest(title="t", user_ids=["u1"], request_id="r" * 129)
    client.fails("CreateChat", request, INVALID, "INVALID_REQUEST_ID")


def test_repeated_create_chat_request_creates_one_chat(client):
    first = client.create(title="Once", request_id="create-1")
    again = client.create(title="Once", request_id="create-1")

    assert again == first
    assert [chat.chat_id for chat in client.stub.ListChats(pb.ListChatsRequest()).chats] == [first.chat_id]


def test_update_chat_changes_the_title(client):
    chat = client.create(title="Old")

    updated = client.stub.UpdateChat(pb.UpdateChatRequest(chat_id=chat.chat_id, title="  New  ")).chat

    assert updated.title == "New"
    assert updated.create_time == chat.create_time
    assert updated.update_time.ToDatetime() >= chat.update_time.ToDatetime()
    assert client.get(chat.chat_id).chat == updated


def test_update_chat_without_a_title_changes_nothing(client):
    chat = client.create(title="Kept", user_ids=["u1", "u2"])

    assert client.stub.UpdateChat(pb.UpdateChatRequest(chat_id=chat.chat_id)).chat == chat


def test_update_chat_rejects_a_blank_title(client):
    chat = client.create()
    request = pb.UpdateChatRequest(chat_id=chat.chat_id, title=" ")

    client.fails("UpdateChat", request, INVALID, "INVALID_TITLE")


def test_update_of_an_unknown_chat_is_not_found_and_names_it(client):
    error = client.fails("UpdateChat", pb.UpdateChatRequest(chat_id=UNKNOWN_ID, title="x"), NOT_FOUND, "CHAT_NOT_FOUND")

    assert UNKNOWN_ID in error.details()


def test_delete_chat_hides_it_from_every_read_and_write(client):
    chat = client.create()
    message = client.append(chat.chat_id, "hello")[0]

    client.delete(chat.chat_id)

    chat_id = chat.chat_id
    client.fails("GetChat", pb.GetChatRequest(chat_id=chat_id), NOT_FOUND, "CHAT_NOT_FOUND")
    client.fails("UpdateChat", pb.UpdateChatRequest(chat_id=chat_id, title="x"), NOT_FOUND, "CHAT_NOT_FOUND")
    client.fails("DeleteChat", pb.DeleteChatRequest(chat_id=chat_id), NOT_FOUND, "CHAT_NOT_FOUND")
    new = [pb.NewMessage(content="late", role=pb.MESSAGE_ROLE_USER)]
    client.fails("AppendMessages", pb.AppendMessagesRequest(chat_id=chat_id, messages=new), NOT_FOUND, "CHAT_NOT_FOUND")
    client.fails("ListRecentMessages", pb.ListRecentMessagesRequest(chat_id=chat_id), NOT_FOUND, "CHAT_NOT_FOUND")
    request = pb.GetMessageRequest(message_id=message.message_id)
    client.fails("GetMessage", request, NOT_FOUND, "MESSAGE_NOT_FOUND")
    assert client.stub.ListChats(pb.ListChatsRequest()).chats == []
    assert client.stub.ListChats(pb.ListChatsRequest(member_user_id="u1")).chats == []


def test_repeated_delete_request_is_answered_again(client):
    chat = client.create()
    request = pb.DeleteChatRequest(chat_id=chat.chat_id, request_id="delete-1")

    client.stub.DeleteChat(request)
    client.stub.DeleteChat(request)

    client.fails("GetChat", pb.GetChatRequest(chat_id=chat.chat_id), NOT_FOUND, "CHAT_NOT_FOUND")


def test_delete_of_an_unknown_chat_is_not_found(client):
    client.fails("DeleteChat", pb.DeleteChatRequest(chat_id=UNKNOWN_ID), NOT_FOUND, "CHAT_NOT_FOUND")


def test_get_chat_of_an_unknown_chat_is_not_found_and_names_it(client):
    error = client.fails("GetChat", pb.GetChatRequest(chat_id=UNKNOWN_ID), NOT_FOUND, "CHAT_NOT_FOUND")

    assert UNKNOWN_ID in error.details()


@pytest.mark.parametrize("chat_id", ["", "nul\x00"])
def test_get_chat_without_a_usable_id_is_invalid(client, chat_id):
    client.fails("GetChat", pb.GetChatRequest(chat_id=chat_id), INVALID, "INVALID_CHAT_ID")


def test_get_chat_rejects_a_negative_page_size_and_a_foreign_token(client):
    chat_id = client.create().chat_id

    client.fails("GetChat", pb.GetChatRequest(chat_id=chat_id, message_page_size=-1), INVALID, "INVALID_PAGE_SIZE")
    request = pb.GetChatRequest(chat_id=chat_id, message_page_token="not-a-token")
    client.fails("GetChat", request, INVALID, "INVALID_PAGE_TOKEN")


def test_list_chats_walks_live_chats_oldest_first(client):
    created = [client.create(title=f"chat {n}").chat_id for n in range(5)]
    client.delete(created[2])

    pages, token = [], ""
    while True:
        response = client.stub.ListChats(pb.ListChatsRequest(page_size=2, page_token=token))
        pages.append([chat.chat_id for chat in response.chats])
        token = response.next_page_token
        if not token:
            break

    assert pages == [[created[0], created[1]], [created[3], created[4]]]


def test_list_chats_by_member_pages_over_that_member_only(client):
    mine = [client.create(user_ids=["me", f"friend-{n}"]).chat_id for n in range(3)]
    client.create(user_ids=["someone-else"])

    first = client.stub.ListChats(pb.ListChatsRequest(member_user_id="me", page_size=2))
    request = pb.ListChatsRequest(member_user_id="me", page_size=2, page_token=first.next_page_token)
    second = client.stub.ListChats(request)

    assert [chat.chat_id for chat in first.chats] == mine[:2]
    assert [chat.chat_id for chat in second.chats] == mine[2:]
    assert second.next_page_token == ""
    assert list(second.chats[0].user_ids) == ["me", "friend-2"]
    assert client.stub.ListChats(pb.ListChatsRequest(member_user_id="nobody")).chats == []


def test_list_chats_rejects_a_negative_page_size_and_a_foreign_token(client):
    client.fails("ListChats", pb.ListChatsRequest(page_size=-1), INVALID, "INVALID_PAGE_SIZE")
    client.fails("ListChats", pb.ListChatsRequest(page_token="bogus!"), INVALID, "INVALID_PAGE_TOKEN")
    client.fails("ListChats", pb.ListChatsRequest(member_user_id="nul\x00"), INVALID, "INVALID_USER_ID")
