"""Many users at once: hundreds of generations stream side by side through Submit, and a slow
generation holds up nobody else's instructions."""

import asyncio
import json

from aiohttp import web

from llmchatlinker.client import AsyncClient
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

GENERATIONS = 200
# How long the gate waits for every generation to arrive before letting the ones there through.
GATE_SECONDS = 45


class GatedProvider:
    """An OpenAI-compatible provider (server-sent events) that holds each request, after
    `latency` seconds, until `expected` requests are open at once: it answers only if that many
    generations can be in flight together, whatever the load on the machine."""

    def __init__(self, expected: int, latency: float = 0.5, tokens: int = 3) -> None:
        self.expected, self.latency, self.tokens = expected, latency, tokens
        self.in_flight = self.peak = self.completed = 0
        self.opened_with = None
        self._gate = asyncio.Event()
        self._runner = None
        self.url = ""

    async def __aenter__(self) -> "GatedProvider":
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1/chat/completions"
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._gate.set()
        await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            if self.in_flight >= self.expected and not self._gate.is_set():
                self.opened_with = self.in_flight
                self._gate.set()
            try:
                await asyncio.wait_for(self._gate.wait(), GATE_SECONDS)
            except TimeoutError:
                self._gate.set()  # give up waiting: the test then fails on opened_with
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for index in range(self.tokens):
                await response.write(_event({"choices": [{"index": 0, "delta": {"content": f"t{index} "}}]}))
            await response.write(_event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                                 + b"data: [DONE]\n\n")
            await response.write_eof()
            self.completed += 1
            return response
        finally:
            self.in_flight -= 1


def _event(chunk: dict) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def test_hundreds_of_generations_are_in_flight_at_once_and_all_succeed(suite, conversation):
    async with GatedProvider(expected=GENERATIONS) as provider, \
            AsyncClient(suite.orchestrator, timeout=120) as client:
        chat = conversation(provider.url, model="crowd")
        # A chat each: instructions on one chat run one after another, by design.
        chats = await asyncio.gather(*(
            client.submit(pb.ChatCreate(title=f"crowd {i}", user_ids=[chat.user_id])) for i in range(GENERATIONS)))
        chat_ids = [result.chat.chat.chat_id for result in chats]

        async def generate(chat_id: str) -> tuple[list[str], pb.Result]:
            deltas, final = [], None
            async for result in client.stream(pb.LlmResponseGenerate(
                    user_id=chat.user_id, chat_id=chat_id, llm_id=chat.llm_id, user_input=f"hi {chat_id}")):
                if result.WhichOneof("payload") == "delta":
                    deltas.append(result.delta.content)
                final = result
            return deltas, final

        outcomes = await asyncio.gather(*(generate(chat_id) for chat_id in chat_ids))

    assert provider.opened_with == GENERATIONS  # every generation was open at the provider together
    assert provider.completed == GENERATIONS
    assert all(final.llm_response.message.content == "t0 t1 t2 " == "".join(deltas) for deltas, final in outcomes)
    assert sorted(final.llm_response.message.chat_id for _, final in outcomes) == sorted(chat_ids)


async def test_a_slow_generation_does_not_delay_other_users_instructions(
        suite, provider_server, conversation, testkit, unique):
    chat = conversation(provider_server.openai_url, model="slow@latency_ms=3000,tokens=2")
    finished: list[str] = []
    async with AsyncClient(suite.orchestrator, timeout=60) as client:

        async def slow_generation() -> pb.Result:
            result = await client.submit(chat.generate("Take your time"))
            finished.append("slow generation")
            return result

        async def create_user(name: str) -> pb.Result:
            result = await client.submit(pb.UserCreate(username=name))
            finished.append("user")
            return result

        slow = asyncio.create_task(slow_generation())
        await _until(lambda: testkit(provider_server, "stats")["in_flight"] == 1, "the slow generation to start")
        users = await asyncio.gather(*(create_user(unique("other")) for _ in range(5)))

        assert not slow.done()
        assert testkit(provider_server, "stats")["completed"] == 0  # the provider is still on it
        reply = await slow

    assert finished == ["user"] * 5 + ["slow generation"]
    assert all(result.user.user_id for result in users)
    assert reply.llm_response.message.content == "t0 t1 "


async def _until(predicate, what: str, timeout: float = 30) -> None:
    """Polls `predicate` (a blocking check, so off the loop) until true; bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(predicate):
        if loop.time() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.02)
