"""Diagnosis for 2 and 4: each unit RPC the suite makes per instruction, called alone, beside its floor."""

from __future__ import annotations

import time
import uuid

import grpc
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


def _calls(bench: Bench, stubs: dict) -> list[tuple[str, str, bool, object]]:
    """(unit, rpc, writes, make_call) for the RPCs on an instruction's path."""
    world = bench.world
    chat_id = world.chats[0]
    llm_id = world.llm_ids[models.FAST]
    user, db, chat, llm = stubs["user_unit"], stubs["db_unit"], stubs["chat_unit"], stubs["llm_unit"]
    return [
        ("db_unit", "GetResult (miss: every new instruction)", False,
         lambda: db.GetResult(db_pb.GetResultRequest(instruction_id=uuid.uuid4().hex), timeout=10)),
        ("db_unit", "PutResult", True,
         lambda: db.PutResult(db_pb.PutResultRequest(instruction_id=uuid.uuid4().hex, result=b"\x08\x01"), timeout=10)),
        ("user_unit", "GetUser", False,
         lambda: user.GetUser(user_pb.GetUserRequest(user_id=world.user_id), timeout=10)),
        ("user_unit", "CreateUser", True,
         lambda: user.CreateUser(user_pb.CreateUserRequest(request_id=uuid.uuid4().hex,
                                                           username=unique_name("h")), timeout=10)),
        ("chat_unit", "GetChat", False,
         lambda: chat.GetChat(chat_pb.GetChatRequest(chat_id=chat_id, message_page_size=1), timeout=10)),
        ("chat_unit", "ListRecentMessages", False,
         lambda: chat.ListRecentMessages(chat_pb.ListRecentMessagesRequest(chat_id=chat_id, max_messages=50),
                                         timeout=10)),
        ("llm_unit", "GetLlm", False, lambda: llm.GetLlm(llm_pb.GetLlmRequest(llm_id=llm_id), timeout=10)),
    ]


async def run(bench: Bench) -> list[Figure]:
    samples = 100 if bench.quick else 300
    await bench.world.ensure_chats(bench.client, 1)
    makers = {"user_unit": user_grpc.UserServiceStub, "db_unit": db_grpc.RecordServiceStub,
              "chat_unit": chat_grpc.ChatServiceStub, "llm_unit": llm_grpc.LlmServiceStub}
    channels = {name: channel(bench.suite.address(name)) for name in makers}
    stubs = {name: make(channels[name]) for name, make in makers.items()}
    figures, detail = [], {}
    try:
        for unit, rpc, writes, call in _calls(bench, stubs):
            for _ in range(WARMUP):
                await _quiet(call)
            watch = CpuWatch({unit: bench.service_pids()[unit]})
            times = []
            watch.start()
            for _ in range(samples):
                started = time.perf_counter()
                await _quiet(call)
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


async def _quiet(call) -> None:
    """A call whose error status is its normal answer (GetResult's NOT_FOUND) still counts."""
    try:
        await call()
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
