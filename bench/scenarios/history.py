"""5: generation and CHAT_LOAD latency in a chat of 10 messages against one of 10,000."""

from __future__ import annotations

import json
import time
import urllib.request

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb
from llmchatlinker.chat.v1 import chat_service_pb2_grpc as chat_grpc
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

from bench import models
from bench.context import Bench
from bench.report import Figure
from bench.stats import percentile
from bench.submit_client import channel
from bench.world import bounded

SHORT, LONG = 10, 10_000
APPEND_BATCH = 10            # AppendMessages takes 1 to 10
SEED_CONCURRENCY = 8
LOAD_PAGE = 10               # the same page from both chats, so only the history differs
GROWTH_TARGET = 1.25         # long p50 / short p50; more than run-to-run noise is growth


async def _seed(bench: Bench, chat_id: str, count: int) -> None:
    """Append history straight on chat_unit, in batches: the fast way to a long chat."""
    llm_id = bench.world.llm_ids[models.SHORT]
    async with channel(bench.suite.address("chat_unit")) as grpc_channel:
        stub = chat_grpc.ChatServiceStub(grpc_channel)

        def batch(start: int) -> chat_pb.AppendMessagesRequest:
            messages = [chat_pb.NewMessage(user_id=bench.world.user_id, content=f"question {i} " * 8,
                                           role=chat_pb.MESSAGE_ROLE_USER) if i % 2 == 0 else
                        chat_pb.NewMessage(user_id=bench.world.user_id, llm_id=llm_id, content=f"answer {i} " * 8,
                                           role=chat_pb.MESSAGE_ROLE_ASSISTANT)
                        for i in range(start, min(start + APPEND_BATCH, count))]
            return chat_pb.AppendMessagesRequest(chat_id=chat_id, messages=messages)

        await bounded((stub.AppendMessages(batch(s), timeout=30) for s in range(0, count, APPEND_BATCH)),
                      SEED_CONCURRENCY)


def _messages_sent_last(bench: Bench) -> int:
    with urllib.request.urlopen(f"{bench.provider_url}/_testkit/requests", timeout=5) as response:
        requests = json.load(response)
    return len(requests[-1]["messages"]) if requests else -1


async def _chat(bench: Bench, size: int) -> str:
    made = await bench.client.run(chat_create=pb.ChatCreate(title=f"history {size}", user_ids=[bench.world.user_id]))
    await _seed(bench, made.chat.chat.chat_id, size)
    return made.chat.chat.chat_id


async def run(bench: Bench) -> list[Figure]:
    samples_generate = 10 if bench.quick else 30
    samples_load = 30 if bench.quick else 100
    started = time.perf_counter()
    chats = {SHORT: await _chat(bench, SHORT), LONG: await _chat(bench, LONG)}
    bench.progress(f"seeded a chat of {LONG:,} messages in {time.perf_counter() - started:.1f} s")

    generate = {SHORT: [], LONG: []}
    sent = {SHORT: 0, LONG: 0}
    llm_id = bench.world.llm_ids[models.SHORT]
    for i in range(samples_generate):
        # Each generation adds two messages: the short side starts from a fresh 10-message chat
        # every time so it stays short; the long one grows by 0.6 % over all samples.
        fresh = await _chat(bench, SHORT)
        for size, chat_id in ((SHORT, fresh), (LONG, chats[LONG])):
            timeline = await bench.client.generate(bench.world.user_id, chat_id, llm_id, "and now?")
            if not timeline.ok:
                raise RuntimeError(f"generation in the {size}-message chat failed: {timeline.error}")
            generate[size].append(timeline.wall)
            sent[size] = _messages_sent_last(bench)
    bench.progress(f"generation: {samples_generate} per chat; messages sent to the provider: {sent}")

    load = {SHORT: [], LONG: []}
    for _ in range(samples_load):
        for size in (SHORT, LONG):
            started = time.perf_counter()
            await bench.client.run(chat_load=pb.ChatLoad(chat_id=chats[size], message_page_size=LOAD_PAGE))
            load[size].append(time.perf_counter() - started)
    bench.progress(f"CHAT_LOAD: {samples_load} per chat")

    figures = []
    for what, values in (("generation", generate), (f"CHAT_LOAD (page of {LOAD_PAGE})", load)):
        for q in (50, 99):
            short_ms, long_ms = (percentile(values[s], q) * 1000 for s in (SHORT, LONG))
            figures.append(Figure("5", f"{what} p{q}, {SHORT} msgs", "ms", short_ms))
            figures.append(Figure("5", f"{what} p{q}, {LONG:,} msgs", "ms", long_ms,
                                  target=f"<= {GROWTH_TARGET}x the {SHORT}-msg chat" if q == 50 else "",
                                  met=(long_ms <= GROWTH_TARGET * short_ms) if q == 50 else None,
                                  note=f"{long_ms / short_ms:.2f}x the {SHORT}-msg chat"))
    bench.details["history"] = {"generate_s": generate, "load_s": load, "messages_sent_to_provider": sent}
    bench.notes.append(f"history: messages sent to the provider per generation: {sent[SHORT]} from the "
                       f"{SHORT}-message chat, {sent[LONG]} from the {LONG:,}-message chat")
    return figures
