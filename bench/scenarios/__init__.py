"""The scenarios of issue 7 (and issue 18's legacy workload), in the order they run; each is
`async def run(bench) -> list[Figure]`."""

from bench.scenarios import concurrency, history, hops, legacy, memory, relay, throughput, ttft

# Memory runs last: its peak RSS is "after the run".
ALL = {
    "concurrency": concurrency,
    "ttft": ttft,
    "relay": relay,
    "throughput": throughput,
    "hops": hops,
    "history": history,
    "legacy": legacy,
    "memory": memory,
}
