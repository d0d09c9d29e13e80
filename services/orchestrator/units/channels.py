"""One gRPC channel per unit, opened at start-up, with retries on UNAVAILABLE and keepalive, over
TLS when configured; every call carries the internal token when one is set."""

import asyncio
import functools
import json

import grpc

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.chat.v1 import chat_service_pb2_grpc as chat_grpc
from llmchatlinker.db.v1 import db_service_pb2 as db_pb2
from llmchatlinker.db.v1 import db_service_pb2_grpc as db_grpc
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.llm.v1 import llm_service_pb2_grpc as llm_grpc
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from llmchatlinker.user.v1 import user_service_pb2_grpc as user_grpc
from services.common import deadlines
from services.common.admission import call_metadata, channel_credentials
from services.common.config import ClientTls
from services.common.interceptors import WatchedStub, watching
from services.common.limits import MESSAGE_SIZE_OPTIONS

# Seconds every unary call to a unit may take (retries included), and a GenerateReply call from
# the request to the last token: services/common/deadlines.py says why these values.
UNARY_DEADLINE_S = deadlines.UNARY_CALL_SECONDS
GENERATION_DEADLINE_S = deadlines.GENERATE_REPLY_CALL_SECONDS

# Every unit method may be retried on UNAVAILABLE: reads are safe, and each mutation carries a
# request id that the unit answers from memory when it sees it again. GenerateReply is the
# exception: the LLM unit reports an unreachable or overloaded provider as UNAVAILABLE too, and
# repeating a generation there would multiply the load on a provider that is already failing.
_RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG = json.dumps({
    "methodConfig": [
        {
            "name": [
                {"service": "llmchatlinker.user.v1.UserService"},
                {"service": "llmchatlinker.chat.v1.ChatService"},
                {"service": "llmchatlinker.llm.v1.LlmService"},
                {"service": "llmchatlinker.db.v1.RecordService"},
            ],
            "retryPolicy": _RETRY_POLICY,
        },
        # A method-level entry overrides the service-level one: no retry policy here.
        {"name": [{"service": "llmchatlinker.llm.v1.LlmService", "method": "GenerateReply"}]},
    ]
})

# The units' services, in the order of UnitChannels' stubs (the name their calls are counted under).
SERVICE_NAMES = tuple(module.DESCRIPTOR.services_by_name[name].full_name for module, name in (
    (user_pb2, "UserService"), (chat_pb2, "ChatService"), (llm_pb2, "LlmService"), (db_pb2, "RecordService")))

CHANNEL_OPTIONS = [
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    # Ping an idle connection every 30 s so a dead peer is noticed before the next call; the
    # units' servers accept pings every 10 s (services/common/serving.py).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    *MESSAGE_SIZE_OPTIONS,
]


class WithToken:
    """A stub whose every method sends the internal token. Each method is bound once, on first
    use, and kept as an attribute: a call costs nothing more than the metadata grpc sends."""

    def __init__(self, stub, token: str):
        self._stub = stub
        self._metadata = call_metadata(token)

    def __getattr__(self, method_name: str):
        method = functools.partial(getattr(self._stub, method_name), metadata=self._metadata)
        setattr(self, method_name, method)
        return method


class UnitChannels:
    """The orchestrator's clients of the four units; `connect()` inside the event loop that uses them."""

    def __init__(self, user: grpc.aio.Channel, chat: grpc.aio.Channel, llm: grpc.aio.Channel,
                 db: grpc.aio.Channel, internal_token: str | None = None):
        self._channels = (user, chat, llm, db)
        stubs = (user_grpc.UserServiceStub(user), chat_grpc.ChatServiceStub(chat), llm_grpc.LlmServiceStub(llm),
                 db_grpc.RecordServiceStub(db))
        if watching():  # metrics or traces on: every call counted, timed and traced, and the token sent
            metadata = call_metadata(internal_token) if internal_token else ()
            stubs = tuple(WatchedStub(stub, name, metadata) for stub, name in zip(stubs, SERVICE_NAMES))
        elif internal_token:
            stubs = tuple(WithToken(stub, internal_token) for stub in stubs)
        self.users, self.chats, self.llms, self.records = stubs

    @classmethod
    def connect(cls, user_addr: str, chat_addr: str, llm_addr: str, db_addr: str, *,
                internal_token: str | None = None, tls: ClientTls | None = None) -> "UnitChannels":
        """Opens the channels (connections are made lazily, on the first call), over TLS when `tls`
        is set; every call carries `internal_token` when set."""
        addresses = (user_addr, chat_addr, llm_addr, db_addr)
        if tls is None:
            channels = [grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) for address in addresses]
        else:
            credentials = channel_credentials(tls)
            channels = [grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS) for address in addresses]
        return cls(*channels, internal_token=internal_token)

    async def wait_ready(self, timeout: float) -> None:
        """Waits until every unit is connected; raises asyncio.TimeoutError after `timeout` seconds."""
        await asyncio.wait_for(asyncio.gather(*(channel.channel_ready() for channel in self._channels)), timeout)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> "UnitChannels":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
