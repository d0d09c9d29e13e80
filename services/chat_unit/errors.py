"""The chat unit's error domain and the errors only this unit raises."""

from services.common.errors import InvalidArgument, NotFound

DOMAIN = "chat.llmchatlinker.dev"


class ChatNotFound(NotFound):
    default_reason = "CHAT_NOT_FOUND"

    def __init__(self, chat_id: str):
        super().__init__(f"chat {chat_id!r} not found", chat_id=chat_id)


class MessageNotFound(NotFound):
    default_reason = "MESSAGE_NOT_FOUND"

    def __init__(self, message_id: str):
        super().__init__(f"message {message_id!r} not found", message_id=message_id)


class MessageNotInChat(InvalidArgument):
    default_reason = "MESSAGE_NOT_IN_CHAT"

    def __init__(self, message_id: str, chat_id: str):
        super().__init__(
            f"message {message_id!r} does not belong to chat {chat_id!r}", message_id=message_id, chat_id=chat_id
        )
