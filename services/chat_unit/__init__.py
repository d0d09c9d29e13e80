"""The chat unit: ChatService, which owns chats and their messages."""
