"""What caller keys cost on the hot path: the same suite with LLMCHATLINKER_AUTH=off and =keys, side by
side, measured alternately: USER_GET instructions per second through Submit (1 and 16 clients),
and time to first token of a generation (the stand-in LLM answering at once).

    .venv/bin/python -m bench.auth_cost [--seconds 3] [--samples 60]

Each suite is `llmchatlinker up` on SQLite and the in-process queue; the keyed one is called with
an app key (made with `llmchatlinker keys create --direct`), the other with none.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from services import launcher
from testkit import LlmServer
from testkit.suite import suite_environment

READY = "llmchatlinker: the suite is up"


def start_suite(data_dir: Path, auth: str) -> tuple[subprocess.Popen, dict[str, str], int]:
    """The suite's launcher, its environment and its orchestrator's pid."""
    environ = suite_environment(data_dir, LLMCHATLINKER_AUTH=auth)
    process = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], env=environ, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    ready = False
    for line in process.stdout:
        ready = ready or READY in line
        if ready and line.split()[:1] == ["orchestrator"]:
            return process, environ, int(line.split("pid")[1].split()[0])
    raise RuntimeError(f"the {auth} suite did not start")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_key(environ: dict[str, str], role: str) -> str:
    made = subprocess.run([sys.executable, "-m", "services.cli", "keys", "create", "--role", role, "--direct"],
                          env={**environ, "LLMCHATLINKER_USER_UNIT_ADDR": launcher.address("user_unit", environ)},
                          capture_output=True, text=True, check=True)
    return made.stdout.strip()


class Caller:
    def __init__(self, address: str, key: str | None):
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = pb_grpc.OrchestratorServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {key}"),) if key else ()

    async def final(self, **request) -> pb.Result:
        async for response in self.stub.Submit(pb.SubmitRequest(instruction=pb.Instruction(**request)),
                                               metadata=self.metadata, timeout=60):
            if response.result.final:
                return response.result
        raise RuntimeError("no final result")

    async def first_token(self, **request) -> float:
        began = time.perf_counter()
        async for response in self.stub.Submit(pb.SubmitRequest(instruction=pb.Instruction(**request)),
                                               metadata=self.metadata, timeout=60):
            if response.result.HasField("delta"):
                return time.perf_counter() - began
        raise RuntimeError("no token")


async def rate(address: str, key: str | None, user_id: str, clients: int, seconds: float,
               pid: int) -> tuple[float, float]:
    """Instructions per second, and the orchestrator's CPU milliseconds per instruction."""
    callers = [Caller(address, key) for _ in range(clients)]
    done = 0
    stop_at = time.perf_counter() + seconds

    async def loop(caller: Caller) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            result = await caller.final(user_get=pb.UserGet(user_id=user_id))
            assert result.status.code == 0, result.status
            done += 1

    began, cpu_began = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*(loop(caller) for caller in callers))
    elapsed, cpu = time.perf_counter() - began, cpu_seconds(pid) - cpu_began
    for caller in callers:
        await caller.channel.close()
    return done / elapsed, cpu / done * 1000


async def world(caller: Caller, llm_url: str) -> tuple[dict, str]:
    """A user, a chat of theirs, and a model of the stand-in LLM: ({user_id, chat_id}, llm_id)."""
    user = (await caller.final(user_create=pb.UserCreate(username=f"bench_{uuid.uuid4().hex[:8]}"))).user.user_id
    chat = (await caller.final(chat_create=pb.ChatCreate(title="t", user_ids=[user]))).chat.chat.chat_id
    provider = (await caller.final(llm_provider_add=pb.LlmProviderAdd(
        name=f"p_{uuid.uuid4().hex[:6]}", api_endpoint=llm_url))).provider.provider_id
    llm = (await caller.final(llm_add=pb.LlmAdd(provider_id=provider, llm_name="stand-in"))).llm.llm_id
    return {"user_id": user, "chat_id": chat}, llm


async def main(seconds: float, samples: int) -> None:
    provider = LlmServer()
    await provider.start()
    processes = []
    try:
        with tempfile.TemporaryDirectory() as off_dir, tempfile.TemporaryDirectory() as keys_dir:
            suites = {}
            for auth, data_dir in (("off", off_dir), ("keys", keys_dir)):
                process, environ, pid = start_suite(Path(data_dir), auth)
                processes.append(process)
                key = make_key(environ, "app") if auth == "keys" else None
                address = launcher.address("orchestrator", environ)
                admin = Caller(address, make_key(environ, "admin") if auth == "keys" else None)
                ids, llm = await world(admin, provider.openai_url)
                suites[auth] = (address, key, ids, llm, pid)
                await admin.channel.close()

            rates: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for _ in range(3):
                for clients in (1, 16):
                    for auth, (address, key, ids, _, pid) in suites.items():
                        rates.setdefault((auth, clients), []).append(
                            await rate(address, key, ids["user_id"], clients, seconds, pid))
            ttfts: dict[str, list[float]] = {auth: [] for auth in suites}
            callers = {auth: Caller(address, key) for auth, (address, key, *_) in suites.items()}
            for _ in range(samples):
                for auth, (_, _, ids, llm, _) in suites.items():
                    ttfts[auth].append(await callers[auth].first_token(llm_response_generate=pb.LlmResponseGenerate(
                        user_id=ids["user_id"], chat_id=ids["chat_id"], llm_id=llm, user_input="hi")))
            for caller in callers.values():
                await caller.channel.close()

            print(f"cost of caller keys (auth=off vs auth=keys with an app key), {os.cpu_count()} CPUs")
            for clients in (1, 16):
                off, keyed = (statistics.median(r for r, _ in rates[(auth, clients)]) for auth in ("off", "keys"))
                off_cpu, keyed_cpu = (statistics.median(c for _, c in rates[(auth, clients)]) for auth in ("off", "keys"))
                print(f"  USER_GET via Submit, {clients:>2} clients: off {off:,.0f} instr/s, keys {keyed:,.0f} "
                      f"instr/s ({(keyed - off) / off * 100:+.1f} %); orchestrator CPU off {off_cpu:.2f}, "
                      f"keys {keyed_cpu:.2f} ms/instr ({keyed_cpu - off_cpu:+.2f})")
            for name, q in (("p50", 0.5), ("p90", 0.9)):
                off, keyed = (statistics.quantiles(ttfts[auth], n=10)[int(q * 10) - 1] * 1000 if q != 0.5
                              else statistics.median(ttfts[auth]) * 1000 for auth in ("off", "keys"))
                print(f"  time to first token {name}: off {off:.1f} ms, keys {keyed:.1f} ms ({keyed - off:+.1f} ms)")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        await provider.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput measurement")
    parser.add_argument("--samples", type=int, default=60, help="generations per suite for time to first token")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.samples))
