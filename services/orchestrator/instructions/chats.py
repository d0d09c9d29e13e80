"""Control Unit handlers of the CHAT_* instructions (chat unit, with members from the user unit)."""

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from services.common.errors import ResourceExhausted
from services.orchestrator.instructions.run import (
    COLLECTING_PAGE_SIZE, MAX_COLLECTED_ITEMS, Payload, Run, collect, present, require,
)


def _view(chat: chat_pb2.Chat, users: list[user_pb2.User], messages=(), next_token: str = "") -> Payload:
    return {"chat": orchestrator_pb2.ChatView(chat=chat, users=users, messages=messages,
                                              next_message_page_token=next_token)}


async def chat_create(run: Run, request: orchestrator_pb2.ChatCreate) -> Payload:
    # Members must be live users; the chat unit does not know users, so the check is ours.
    # BatchGetUsers' NOT_FOUND (naming the first missing id) is the instruction's answer.
    members: list[user_pb2.User] = []
    if request.user_ids:
        response = await run.units.users.BatchGetUsers(
            user_pb2.BatchGetUsersRequest(user_ids=request.user_ids))
        members = list(response.users)
    created = await run.units.chats.CreateChat(chat_pb2.CreateChatRequest(
        request_id=run.request_id("create-chat"), title=request.title, user_ids=request.user_ids,
    ))
    by_id = {user.user_id: user for user in members}
    return _view(created.chat, [by_id[user_id] for user_id in created.chat.user_ids if user_id in by_id])


async def chat_update(run: Run, request: orchestrator_pb2.ChatUpdate) -> Payload:
    response = await run.units.chats.UpdateChat(chat_pb2.UpdateChatRequest(
        request_id=run.request_id("update-chat"), chat_id=request.chat_id, **present(request, "title"),
    ))
    return _view(response.chat, await run.units.users.live_users(response.chat.user_ids))


async def chat_delete(run: Run, request: orchestrator_pb2.ChatDelete) -> Payload:
    await run.units.chats.DeleteChat(chat_pb2.DeleteChatRequest(
        request_id=run.request_id("delete-chat"), chat_id=request.chat_id,
    ))
    return {}


async def chat_load(run: Run, request: orchestrator_pb2.ChatLoad) -> Payload:
    """One page of messages when asked for one; with message_page_size 0 and no token, every
    message (at most MAX_COLLECTED_ITEMS, the most recent ones), as legacy clients expect.

    Either way at most run.max_page_bytes of messages: a page asked for that is larger is
    RESOURCE_EXHAUSTED; collecting stops before the page that would go past it, and its token
    is the answer's next_message_page_token."""
    get = chat_pb2.GetChatRequest(chat_id=request.chat_id, message_page_size=request.message_page_size,
                                  message_page_token=request.message_page_token)
    collecting = not (request.message_page_size or request.message_page_token)
    if collecting:
        get.message_page_size = COLLECTING_PAGE_SIZE
    response = await run.units.chats.GetChat(get)
    size = _bytes_of(response.messages)
    while collecting and size > run.max_page_bytes and get.message_page_size > 1:
        get.message_page_size //= 2  # the most recent messages alone are too many bytes: fewer of them
        response = await run.units.chats.GetChat(get)
        size = _bytes_of(response.messages)
    if size > run.max_page_bytes:
        raise ResourceExhausted(
            f"this page of messages is {size:,} bytes, more than the {run.max_page_bytes:,} a CHAT_LOAD answers "
            "(LLMCHATLINKER_MAX_CHAT_LOAD_BYTES): ask for a smaller message_page_size",
            reason="PAGE_TOO_LARGE", limit=run.max_page_bytes)
    messages = list(response.messages)
    token = response.next_message_page_token
    while collecting and token and len(messages) < MAX_COLLECTED_ITEMS:
        get.message_page_token = token
        older = await run.units.chats.GetChat(get)
        size += _bytes_of(older.messages)
        if size > run.max_page_bytes:
            break  # the older messages stay behind `token`
        messages[:0] = older.messages  # each next page holds older messages
        token = older.next_message_page_token
    members = await run.units.users.live_users(response.chat.user_ids)
    return _view(response.chat, members, messages, token)


def _bytes_of(messages) -> int:
    return sum(message.ByteSize() for message in messages)


async def chat_list(run: Run, request: orchestrator_pb2.ChatList) -> Payload:
    chats, token = await collect(run.units.chats.ListChats, chat_pb2.ListChatsRequest(
        page_size=request.page_size, page_token=request.page_token), "chats")
    return {"chats": orchestrator_pb2.ChatPage(chats=chats, next_page_token=token)}


async def own_chat_list(run: Run, request: orchestrator_pb2.ChatList) -> Payload:
    """CHAT_LIST for a user key: the chats its user is a member of."""
    chats, token = await collect(run.units.chats.ListChats, chat_pb2.ListChatsRequest(
        member_user_id=run.caller.user_id, page_size=request.page_size, page_token=request.page_token), "chats")
    return {"chats": orchestrator_pb2.ChatPage(chats=chats, next_page_token=token)}


async def chat_list_by_user(run: Run, request: orchestrator_pb2.ChatListByUser) -> Payload:
    await run.units.users.get_user(require(request.user_id, "user_id"))  # an unknown user is NOT_FOUND, not an empty list
    chats, token = await collect(run.units.chats.ListChats, chat_pb2.ListChatsRequest(
        member_user_id=require(request.user_id, "user_id"), page_size=request.page_size,
        page_token=request.page_token), "chats")
    return {"chats": orchestrator_pb2.ChatPage(chats=chats, next_page_token=token)}
