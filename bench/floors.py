"""The floors of /work/shared/reference/floors.md that each figure is built from.

Each entry is (value, how it is built), so the table can print the floor beside the figure and
the reader can check the arithmetic. Times in milliseconds unless named otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

# Parts (p50, p99) measured on this machine kind, one at a time on an idle box.
GRPC_UNARY = (0.65, 0.93)
GRPC_STREAM_FIRST = (0.93, 2.1)
GRPC_STREAM_CPU_PER_1000 = 0.04        # CPU-s per 1,000 messages, per side
RABBIT_RPC = (0.65, 1.07)              # pika, persistent request, reply_to
RABBIT_PERSISTENT_MSG_S = 4100         # persistent + confirms, one queue
SSE_FIRST_CHUNK = (0.66, 1.08)         # httpx keep-alive, time to first chunk
SSE_50_EVENTS_MS = 1.4                 # whole 50-event stream, client side
PG_COMMIT = (0.45, 0.77)
PG_SELECT_BY_KEY = 0.32                # p50, in a default transaction
AIOHTTP_WALL_S = {64: 0.51, 256: 0.54}  # 64 / 256 simultaneous 500 ms calls, one ClientSession


@dataclass(frozen=True)
class Floor:
    value: float
    unit: str
    built_from: str

    def text(self) -> str:
        return f"{self.value:g} {self.unit}"


def concurrency_wall(n: int) -> Floor:
    # The provider's 500 ms; aiohttp adds ~10 ms at 64 and ~40 ms at 256 on this machine.
    measured = AIOHTTP_WALL_S.get(n)
    if measured is None:
        return Floor(0.5, "s", "provider 500 ms")
    return Floor(measured, "s", f"provider 500 ms; one aiohttp session, {n} at once: {measured} s")


def added_ttft(q: str) -> Floor:
    # Submit's stream (first message) + one gRPC hop to llm_unit's stream + history read hop;
    # the provider's SSE first chunk is in both paths and cancels out.
    i = 0 if q == "p50" else 1
    value = GRPC_STREAM_FIRST[i] + GRPC_STREAM_FIRST[i] + GRPC_UNARY[i]
    return Floor(round(value, 2), "ms",
                 f"2 gRPC stream first msgs ({GRPC_STREAM_FIRST[i]}) + 1 unary hop ({GRPC_UNARY[i]}), {q}")


def relay_cpu_per_1000() -> Floor:
    # llm_unit sends, orchestrator receives and sends again: three stream sides, plus the
    # SSE parse of the provider's events (1.4 ms per 50 events).
    sse = SSE_50_EVENTS_MS / 50
    value = 3 * GRPC_STREAM_CPU_PER_1000 + sse
    return Floor(round(value, 3), "CPU-s",
                 f"3 gRPC stream sides x {GRPC_STREAM_CPU_PER_1000} + SSE parse {sse:.3f}")


def relay_added_token_ms() -> Floor:
    return Floor(0.2, "ms", "2 stream hops x ~0.1 ms per message")


def instruction_latency(path: str, kind: str, q: str) -> Floor:
    """One USER_* instruction: transport in and out, then its unit hops. A read (USER_GET) is one
    hop to user_unit and a SELECT; an effect (USER_CREATE) looks the ledger up, writes, and
    stores its result: three hops, two of them with a commit."""
    i = 0 if q == "p50" else 1
    if kind == "USER_GET":
        hops, steps = GRPC_UNARY[i] + PG_SELECT_BY_KEY, f"1 gRPC hop {GRPC_UNARY[i]} + SELECT {PG_SELECT_BY_KEY}"
    else:
        hops, steps = 3 * GRPC_UNARY[i] + 2 * PG_COMMIT[i], f"3 gRPC hops {GRPC_UNARY[i]} + 2 commits {PG_COMMIT[i]}"
    if path == "amqp":
        value, first = hops + RABBIT_RPC[i], f"broker RPC {RABBIT_RPC[i]}"
    else:  # the front door's stream; the queue behind it is in-process by default (--amqp adds a broker)
        value, first = hops + GRPC_STREAM_FIRST[i], f"Submit stream {GRPC_STREAM_FIRST[i]}"
    return Floor(round(value, 2), "ms", f"{first} + {steps}, {q}")


def closed_loop_rate(clients: int, latency: Floor) -> Floor:
    """What `clients` clients, each sending its next instruction when answered, would reach if
    every instruction took the latency floor (the machine's two cores permitting)."""
    return Floor(round(clients * 1000 / latency.value), "instr/s",
                 f"{clients} client{'s' if clients > 1 else ''} / latency floor p50: " + latency.built_from)


def broker_instruction_rate() -> Floor:
    # Request and reply are two persistent messages.
    return Floor(RABBIT_PERSISTENT_MSG_S / 2, "instr/s", "broker 4,100 persistent msg/s / 2 msgs each")


def legacy_read_latency() -> Floor:
    """A legacy USER_GET, p50."""
    return instruction_latency("amqp", "USER_GET", "p50")


def legacy_create_latency() -> Floor:
    """A legacy USER_CREATE, p50."""
    return instruction_latency("amqp", "USER_CREATE", "p50")
