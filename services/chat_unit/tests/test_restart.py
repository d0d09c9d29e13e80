"""The chat unit as a deployable: chats, messages and answered requests outlive a restart."""


def test_restart_keeps_chats_messages_and_answered_requests(start_server, open_client):
    first = start_server()
    client = open_client(first)
    chat = client.create(title="Durable", user_ids=["u1", "u2"])
    stored = client.append(chat.chat_id, "kept", request_id="append-1")
    first.stop(grace=None)

    client = open_client(start_server())
    response = client.get(chat.chat_id)
    assert (response.chat.title, list(response.chat.user_ids)) == ("Durable", ["u1", "u2"])
    assert response.chat.create_time == chat.create_time
    assert list(response.messages) == stored
    assert client.append(chat.chat_id, "kept", request_id="append-1") == stored
    assert len(client.get(chat.chat_id).messages) == 1
