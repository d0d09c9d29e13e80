"""Fixtures of the chat unit's tests: the shared unit fixtures (testkit.units) on ChatService, and
a ChatClient with the short-hands the tests share."""

import grpc
import pytest
from llmchatlinker.chat.v1 import chat_service_pb2 as pb
from llmchatlinker.chat.v1 import chat_service_pb2_grpc as pb_grpc

from services.chat_unit.config import Settings
from services.chat_unit.errors import DOMAIN
from services.chat_unit.server import build_server
from testkit.units import DatabaseUnit, channel, connect, expect_failure, server, settings, start_server  # noqa: F401

USER = pb.MESSAGE_ROLE_USER
ASSISTANT = pb.MESSAGE_ROLE_ASSISTANT


class ChatClient:
    """The generated stub, plus the short-hands the tests share."""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel
        self.stub = pb_grpc.ChatServiceStub(channel)

    def create(self, title: str = "A chat", user_ids=("u1",), request_id: str = "") -> pb.Chat:
        request = pb.CreateChatRequest(title=title, user_ids=user_ids, request_id=request_id)
        return self.stub.CreateChat(request, timeout=10).chat

    def append(self, chat_id: str, *contents: str, role=USER, request_id: str = "") -> list[pb.Message]:
        messages = [pb.NewMessage(user_id="u1", content=content, role=role) for content in contents]
        request = pb.AppendMessagesRequest(chat_id=chat_id, messages=messages, request_id=request_id)
        return list(self.stub.AppendMessages(request, timeout=10).messages)

    def delete(self, chat_id: str) -> None:
        self.stub.DeleteChat(pb.DeleteChatRequest(chat_id=chat_id), timeout=10)

    def get(self, chat_id: str, page_size: int = 0, page_token: str = "") -> pb.GetChatResponse:
        request = pb.GetChatRequest(chat_id=chat_id, message_page_size=page_size, message_page_token=page_token)
        return self.stub.GetChat(request, timeout=10)

    def recent(self, chat_id: str, **fields) -> list[str]:
        """Contents of ListRecentMessages, in the order returned."""
        request = pb.ListRecentMessagesRequest(chat_id=chat_id, **fields)
        return [message.content for message in self.stub.ListRecentMessages(request, timeout=10).messages]

    def fails(self, rpc: str, request, code: grpc.StatusCode, reason: str) -> grpc.RpcError:
        """Calls an RPC that must fail with this code and ErrorInfo reason; returns the error."""
        return expect_failure(getattr(self.stub, rpc), request, code, reason, DOMAIN)


@pytest.fixture
def database_unit() -> DatabaseUnit:
    return DatabaseUnit(Settings, build_server, pb_grpc.ChatServiceStub, DOMAIN)


@pytest.fixture
def open_client(connect):
    """Opens a ChatClient on a server: open_client(start_server()), for a restart or a second caller."""
    return lambda server: ChatClient(connect(server.port))


@pytest.fixture
def client(channel) -> ChatClient:
    return ChatClient(channel)
