"""The chat unit's error domain and the errors only this unit raises."""

from services.common.errors import InvalidArgument, NotFound, PermissionDenied

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


class NotAChatMember(PermissionDenied):
    default_reason = "NOT_A_CHAT_MEMBER"

    def __init__(self, user_id: str, chat_id: str):
        # lowerCamelCase keys, as AIP-193 asks and as the orchestrator's NOT_A_CHAT_MEMBER has them.
        super().__init__(f"user {user_id!r} is not a member of chat {chat_id!r}", userId=user_id, chatId=chat_id)
