"""How loaded the machine is right now, and what a bare gRPC server costs per call.

A health-only server in its own process, grpc.aio like the orchestrator and llm_unit or a
thread pool like the database units; `python -m bench.calibrate --serve PORT --kind K` is that
server half. Its round trip is compared with the floor; its CPU per call is what any unit RPC
costs before the unit does any work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bench import floors
from bench.proc import cpu_seconds
from bench.stats import percentile
from bench.suite import free_port, grpc_serving, spawn, wait_until

CALLS = 500
KINDS = ("aio", "threaded")


async def _serve_aio(port: int) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _serve_threaded(port: int) -> None:
    # As services/common/serving.py's ThreadedServer builds it.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


async def grpc_round_trip(log_dir: Path, kind: str = "aio") -> dict:
    """p50/p99 of a bare unary call against a `kind` server now, its floor ratio and server CPU."""
    port = free_port()
    process = spawn(f"calibrate-{kind}", [sys.executable, "-m", "bench.calibrate", "--serve", str(port),
                                          "--kind", kind], {}, port, log_dir)
    try:
        await wait_until(process, lambda: grpc_serving(process.address))
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            for _ in range(20):
                await stub.Check(request, timeout=5)
            times = []
            cpu_before = cpu_seconds(process.pid)
            for _ in range(CALLS):
                started = time.perf_counter()
                await stub.Check(request, timeout=5)
                times.append(time.perf_counter() - started)
            server_cpu_ms = (cpu_seconds(process.pid) - cpu_before) / CALLS * 1000
    finally:
        process.stop()
    p50, p99 = percentile(times, 50) * 1000, percentile(times, 99) * 1000
    return {"kind": kind, "p50_ms": p50, "p99_ms": p99, "server_cpu_ms_per_call": server_cpu_ms,
            "vs_floor_p50": p50 / floors.GRPC_UNARY[0], "vs_floor_p99": p99 / floors.GRPC_UNARY[1]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, required=True)
    parser.add_argument("--kind", choices=KINDS, default="aio")
    args = parser.parse_args()
    if args.kind == "aio":
        asyncio.run(_serve_aio(args.serve))
    else:
        _serve_threaded(args.serve)
