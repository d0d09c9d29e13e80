"""The four real units in-process on SQLite, the stand-in LLM provider, and a ControlUnit wired to them.

Import the `units` fixture into a test module: `from services.orchestrator.tests.units_fixture import units`.
Every unit call the Control Unit makes goes through a wrapper that fails the test when the call
has no deadline, so "a deadline on every call" is checked by every test that uses the fixture.
"""

import dataclasses
import uuid

import pytest

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.wire import instruction_from_json
from services.chat_unit import config as chat_config
from services.chat_unit import server as chat_server
from services.db_unit import config as db_config
from services.db_unit import server as db_server
from services.llm_unit import config as llm_config
from services.llm_unit import server as llm_server
from services.orchestrator.channels import GENERATION_DEADLINE_S, UNARY_DEADLINE_S, UnitChannels
from services.orchestrator.control import ControlUnit
from services.user_unit import config as user_config
from services.user_unit import server as user_server
from testkit import LlmServer

ANY_PORT = "127.0.0.1:0"


class DeadlineChecked:
    """A stub whose every call must carry a deadline no longer than the allowed one; calls are logged."""

    def __init__(self, stub, calls: list[str]):
        self._stub = stub
        self._calls = calls

    def __getattr__(self, method_name: str):
        method = getattr(self._stub, method_name)
        limit = GENERATION_DEADLINE_S if method_name == "GenerateReply" else UNARY_DEADLINE_S

        def call(request, **options):
            timeout = options.get("timeout")
            assert timeout is not None and 0 < timeout <= limit, f"{method_name} called without a deadline"
            self._calls.append(method_name)
            return method(request, **options)

        return call


@dataclasses.dataclass
class Units:
    channels: UnitChannels
    control: ControlUnit
    provider: LlmServer
    # Names of the unit methods called, in order.
    calls: list[str]
    # Progress events emitted by the last run, in order.
    events: list[pb.Result] = dataclasses.field(default_factory=list)

    async def run(self, body: dict | pb.Instruction, instruction_id: str | None = None) -> pb.Result:
        """Executes a legacy JSON body or a typed instruction under a fresh (or the given) id."""
        instruction = pb.Instruction()
        instruction.CopyFrom(body if isinstance(body, pb.Instruction) else instruction_from_json(body))
        instruction.instruction_id = instruction_id or str(uuid.uuid4())
        self.events = []
        return await self.control.execute(instruction, self.emit)

    async def ok(self, json_type: str, **data) -> pb.Result:
        """Runs `{"type": json_type, "data": data}` and fails the test unless it succeeds."""
        result = await self.run({"type": json_type, "data": data})
        assert result.status.code == 0, f"{json_type} failed: {result.status}"
        return result

    async def emit(self, event: pb.Result) -> None:
        self.events.append(event)

    # Small builders for the state most tests need.
    async def user(self, username: str) -> str:
        return (await self.ok("USER_CREATE", username=username)).user.user_id

    async def chat(self, *user_ids: str, title: str = "Rivers") -> str:
        return (await self.ok("CHAT_CREATE", title=title, user_ids=list(user_ids))).chat.chat.chat_id

    async def model(self, name: str = "stand-in", provider_name: str | None = None, **limits) -> tuple[str, str]:
        provider = await self.ok("LLM_PROVIDER_ADD", name=provider_name or f"provider-{uuid.uuid4().hex[:8]}",
                                 api_endpoint=self.provider.openai_url)
        provider_id = provider.provider.provider_id
        llm = await self.ok("LLM_ADD", provider_id=provider_id, llm_name=name, **limits)
        return provider_id, llm.llm.llm_id


@pytest.fixture
async def units(tmp_path):
    def url(name: str) -> str:
        return f"sqlite:///{tmp_path / name}.db"

    user = user_server.build_server(user_config.Settings(address=ANY_PORT, database_url=url("user"))).start()
    chat = chat_server.build_server(chat_config.Settings(address=ANY_PORT, database_url=url("chat"))).start()
    db = db_server.build_server(db_config.Settings(address=ANY_PORT, database_url=url("db"))).start()
    llm = await llm_server.build_server(llm_config.Settings(address=ANY_PORT, database_url=url("llm"))).start()
    provider = LlmServer()
    await provider.start()
    channels = UnitChannels.connect(*(f"127.0.0.1:{server.port}" for server in (user, chat, llm, db)))
    calls: list[str] = []
    channels.users = DeadlineChecked(channels.users, calls)
    channels.chats = DeadlineChecked(channels.chats, calls)
    channels.llms = DeadlineChecked(channels.llms, calls)
    channels.records = DeadlineChecked(channels.records, calls)
    try:
        yield Units(channels=channels, control=ControlUnit(channels), provider=provider, calls=calls)
    finally:
        await channels.close()
        await provider.stop()
        await llm.stop(0)
        for server in (user, chat, db):
            server.stop(0)
