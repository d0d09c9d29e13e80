"""Diagnosis for 2 and 4: each unit RPC the suite makes per instruction, called alone, beside its floor."""

from __future__ import annotations

import time
import uuid

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb
from llmchatlinker.chat.v1 import chat_service_pb2_grpc as chat_grpc
from llmchatlinker.db.v1 import db_service_pb2 as db_pb
from llmchatlinker.db.v1 import db_service_pb2_grpc as db_grpc
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb
from llmchatlinker.llm.v1 import llm_service_pb2_grpc as llm_grpc
from llmchatlinker.user.v1 import user_service_pb2 as user_pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as user_grpc

from bench import floors, models
from bench.context import Bench
from bench.proc import CpuWatch
from bench.report import Figure
from bench.stats import percentile
from bench.submit_client import channel
from bench.world import unique_name

WARMUP = 20
# Entries of the batched calls shown as a batch: instructions in flight at once.
BATCH = 64


def _calls(bench: Bench, stubs: dict) -> list[tuple[str, str, bool, object]]:
    """(unit, rpc, writes, make_call) for the RPCs on an instruction's path, as the orchestrator
    makes them: the ledger and the user check batched across instructions in flight (shown alone
    and as a batch of BATCH), the chat's context read with its membership check."""
    world = bench.world
    chat_id = world.chats[0]
    speaker = world.speakers[chat_id]
    llm_id = world.llm_ids[models.FAST]
    appended_to = world.chats[BATCH]  # grows by a turn per call: a chat no other read above uses
    user, db, chat, llm = stubs["user_unit"], stubs["db_unit"], stubs["chat_unit"], stubs["llm_unit"]

    def results(count: int) -> db_pb.PutResultsRequest:
        return db_pb.PutResultsRequest(results=[db_pb.PutResultRequest(instruction_id=uuid.uuid4().hex, result=b"\x08\x01")
                                                for _ in range(count)])

    def users(count: int) -> user_pb.BatchGetUsersRequest:
        return user_pb.BatchGetUsersRequest(user_ids=[world.speakers[c] for c in world.chats[:count]], omit_missing=True)

    return [
        ("db_unit", "GetResults, 1 id (miss: every new effect)", False,
         lambda: db.GetResults(db_pb.GetResultsRequest(instruction_ids=[uuid.uuid4().hex]), timeout=10)),
        ("db_unit", f"GetResults, {BATCH} ids (misses)", False,
         lambda: db.GetResults(db_pb.GetResultsRequest(instruction_ids=[uuid.uuid4().hex for _ in range(BATCH)]),
                               timeout=10)),
        ("db_unit", "PutResults, 1 result", True, lambda: db.PutResults(results(1), timeout=10)),
        ("db_unit", f"PutResults, {BATCH} results", True, lambda: db.PutResults(results(BATCH), timeout=10)),
        ("user_unit", "BatchGetUsers, 1 id", False, lambda: user.BatchGetUsers(users(1), timeout=10)),
        ("user_unit", f"BatchGetUsers, {BATCH} ids", False, lambda: user.BatchGetUsers(users(BATCH), timeout=10)),
        ("user_unit", "CreateUser", True,
         lambda: user.CreateUser(user_pb.CreateUserRequest(request_id=uuid.uuid4().hex,
                                                           username=unique_name("h")), timeout=10)),
        ("chat_unit", "ListRecentMessages (with membership)", False,
         lambda: chat.ListRecentMessages(chat_pb.ListRecentMessagesRequest(
             chat_id=chat_id, max_messages=49, member_user_id=speaker), timeout=10)),
        ("chat_unit", f"BatchListRecentMessages, {BATCH} reads (with membership)", False,
         lambda: chat.BatchListRecentMessages(chat_pb.BatchListRecentMessagesRequest(requests=[
             chat_pb.ListRecentMessagesRequest(chat_id=c, max_messages=49, member_user_id=world.speakers[c])
             for c in world.chats[:BATCH]]), timeout=10)),
        ("chat_unit", "AppendMessages, 2 messages (a turn)", True,
         lambda: chat.AppendMessages(chat_pb.AppendMessagesRequest(
             request_id=uuid.uuid4().hex, chat_id=appended_to, messages=[
                 chat_pb.NewMessage(user_id=world.speakers[appended_to], content="question " * 8,
                                    role=chat_pb.MESSAGE_ROLE_USER),
                 chat_pb.NewMessage(llm_id=llm_id, content="answer " * 8, role=chat_pb.MESSAGE_ROLE_ASSISTANT)]),
             timeout=10)),
        ("llm_unit", "GetLlm (a model's first use per 2 s)", False,
         lambda: llm.GetLlm(llm_pb.GetLlmRequest(llm_id=llm_id), timeout=10)),
    ]


async def run(bench: Bench) -> list[Figure]:
    samples = 100 if bench.quick else 300
    await bench.world.ensure_chats(bench.client, BATCH + 1)
    makers = {"user_unit": user_grpc.UserServiceStub, "db_unit": db_grpc.RecordServiceStub,
              "chat_unit": chat_grpc.ChatServiceStub, "llm_unit": llm_grpc.LlmServiceStub}
    channels = {name: channel(bench.suite.address(name)) for name in makers}
    stubs = {name: make(channels[name]) for name, make in makers.items()}
    figures, detail = [], {}
    try:
        for unit, rpc, writes, call in _calls(bench, stubs):
            for _ in range(WARMUP):
                await call()
            watch = CpuWatch({unit: bench.service_pids()[unit]})
            times = []
            watch.start()
            for _ in range(samples):
                started = time.perf_counter()
                await call()
                times.append(time.perf_counter() - started)
            cpu_ms = watch.stop()[unit] / samples * 1000
            p50, p99 = percentile(times, 50) * 1000, percentile(times, 99) * 1000
            floor_p50 = floors.GRPC_UNARY[0] + (floors.PG_COMMIT[0] if writes else 0)
            built = "gRPC unary 0.65" + (" + commit 0.45" if writes else "")
            figures.append(Figure("h", f"{unit}.{rpc} p50", "ms", p50, floor=floors.Floor(floor_p50, "ms", built),
                                  note=f"p99 {p99:.2f} ms; unit CPU {cpu_ms:.2f} ms/call"))
            detail[f"{unit}.{rpc}"] = {"p50_ms": p50, "p99_ms": p99, "unit_cpu_ms_per_call": cpu_ms}
            bench.progress(f"{unit}.{rpc}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, CPU {cpu_ms:.2f} ms/call")
    finally:
        for grpc_channel in channels.values():
            await grpc_channel.close()
    bench.details["hops"] = detail
    return figures
