"""What /proc says about a process: CPU seconds, resident and peak memory, its descendants."""

from __future__ import annotations

import contextlib
import os

_TICKS = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The pid and every live process below it (LiteLLM may fork workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if not os.path.exists(f"/proc/{current}"):
            continue
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except OSError:
            pass
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return 0.0
    # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process has had."""
    return _status_kib(pid, "VmHWM") / 1024


def tree_peak_rss_mib(pid: int) -> float:
    return sum(peak_rss_mib(p) for p in descendants(pid))


class CpuWatch:
    """CPU seconds of named processes between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def stop(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self._before[name] for name, pid in self._pids.items()}


BROKER = "broker (beam.smp)"


def broker_pids() -> dict[str, int]:
    """RabbitMQ's Erlang VM when it runs on this machine (readable in /proc), else nothing."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/comm") as handle:
                if handle.read().strip() == "beam.smp":
                    return {BROKER: int(entry.name)}
    return {}
