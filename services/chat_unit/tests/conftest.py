"""Fixtures of the chat unit's tests: a real server on port 0, on SQLite and on PostgreSQL."""

import grpc
import pytest
from llmchatlinker.chat.v1 import chat_service_pb2 as pb
from llmchatlinker.chat.v1 import chat_service_pb2_grpc as pb_grpc

from services.chat_unit.config import Settings
from services.chat_unit.errors import DOMAIN
from services.chat_unit.server import build_server
from services.common.errors import error_info

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
        with pytest.raises(grpc.RpcError) as caught:
            getattr(self.stub, rpc)(request, timeout=10)
        info = error_info(caught.value)
        assert (caught.value.code(), info.reason, info.domain) == (code, reason, DOMAIN), caught.value.details()
        return caught.value


@pytest.fixture
def settings(database_target) -> Settings:
    return Settings(address="127.0.0.1:0", database_url=database_target.url, database_schema=database_target.schema)


@pytest.fixture
def start(settings):
    """Starts a server on the test's database; every server started is stopped at the end."""
    servers = []

    def start_server():
        servers.append(build_server(settings).start())
        return servers[-1]

    yield start_server
    for server in servers:
        server.stop(grace=None)


@pytest.fixture
def connect():
    """Opens a ChatClient on a server; every channel opened is closed at the end."""
    channels = []

    def open_client(server) -> ChatClient:
        channels.append(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        return ChatClient(channels[-1])

    yield open_client
    for channel in channels:
        channel.close()


@pytest.fixture
def client(start, connect) -> ChatClient:
    return connect(start())


@pytest.fixture
def channel(client) -> grpc.Channel:
    return client.channel
