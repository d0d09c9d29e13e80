"""The scenarios of issue 7, in the order they run; each is `async def run(bench) -> list[Figure]`."""

from bench.scenarios import concurrency, history, hops, memory, relay, throughput, ttft

# Memory runs last: its peak RSS is "after the run".
ALL = {
    "concurrency": concurrency,
    "ttft": ttft,
    "relay": relay,
    "throughput": throughput,
    "hops": hops,
    "history": history,
    "memory": memory,
}
