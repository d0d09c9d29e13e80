"""Profiles of each suite process while a scenario runs, summarised as text beside the raw data.

Two tools, since neither alone shows where a unit's CPU goes:
- py-spy (`--gil`: samples only the thread holding the GIL) names the Python functions. Without
  `--gil` it counts threads parked in grpc's C core (Condition.wait, _serve) as busy.
- perf (cpu-clock) splits all CPU, native included, by library: the interpreter, grpc's core,
  SQLite, the kernel.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench.tools import tool_venv

PY_SPY = "py-spy==0.4.3"
PY_SPY_OPTIONS = ["--gil", "--nonblocking"]
RATE_HZ = 200
TOP = 12
TOOLS = ("py-spy", "perf")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module.py)`; lines merged so a function counts once."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({Path(match['file']).name})"


def summarise_py_spy(raw: Path) -> dict:
    """Share of samples per function: where the time is spent (self) and under what (inclusive)."""
    own, under, total = Counter(), Counter(), 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")[1:]] or ["(no python frame)"]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            under[frame] += n
    share = lambda counter: [(name, n / total) for name, n in counter.most_common(TOP)] if total else []  # noqa: E731
    return {"samples": total, "self": share(own), "inclusive": share(under)}


def summarise_perf(raw: Path) -> dict:
    """Share of CPU samples per library and per native symbol."""
    def report(sort: str) -> list[tuple[str, float]]:
        out = subprocess.run(["perf", "report", "-i", str(raw), "--sort", sort, "--stdio", "--no-children"],
                             capture_output=True, text=True).stdout
        rows = []
        for line in out.splitlines():
            match = re.match(r"^\s+([\d.]+)%\s+(.*\S)\s*$", line)
            if match:
                rows.append((re.sub(r"\s+", " ", match[2]), float(match[1]) / 100))
        return rows[:TOP]

    samples = subprocess.run(["perf", "report", "-i", str(raw), "--stdio", "--header-only"],
                             capture_output=True, text=True).stdout
    match = re.search(r"sample_freq.*?(\d+)", samples)
    return {"samples": None, "freq": match[1] if match else "", "self": report("dso"), "inclusive": report("dso,sym")}


class Profiler:
    """Records every named process for the duration of a `with` block."""

    def __init__(self, out_dir: Path, pids: dict[str, int], tool: str = "py-spy") -> None:
        self.tool = tool
        if tool == "py-spy":
            self._bin = str(tool_venv(".tools-venv", [PY_SPY], "py-spy") / "py-spy")
        elif not shutil.which("perf"):
            raise RuntimeError("perf is not installed (Debian: apt-get install linux-perf)")
        self._out_dir = out_dir
        self._pids = pids
        self.last: dict = {}
        out_dir.mkdir(parents=True, exist_ok=True)

    def _command(self, pid: int, raw: Path) -> list[str]:
        if self.tool == "perf":
            return ["perf", "record", "-F", str(RATE_HZ), "-p", str(pid), "-o", str(raw)]
        return [self._bin, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw",
                *PY_SPY_OPTIONS, "--output", str(raw)]

    @contextlib.contextmanager
    def recording(self, label: str):
        spies = {}
        for name, pid in self._pids.items():
            raw = self._out_dir / f"{label}-{name}.{self.tool}.{'data' if self.tool == 'perf' else 'txt'}"
            log = open(self._out_dir / f"{label}-{name}.{self.tool}.log", "wb")
            spies[name] = (raw, subprocess.Popen(self._command(pid, raw), stdout=log, stderr=subprocess.STDOUT))
            log.close()
        try:
            yield
        finally:
            summary = {}
            for name, (raw, spy) in spies.items():
                spy.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(30)
                if not raw.exists():
                    summary[name] = {"samples": 0, "self": [], "inclusive": []}
                elif self.tool == "perf":
                    summary[name] = summarise_perf(raw)
                else:
                    summary[name] = summarise_py_spy(raw)
            self.last = summary
            self._write(label, summary)

    def _write(self, label: str, summary: dict) -> None:
        if self.tool == "perf":
            head = f"perf record -F {RATE_HZ} (cpu-clock, all CPU, native included), during '{label}'"
            titles = {"self": "by library", "inclusive": "by library and symbol"}
        else:
            head = (f"py-spy {' '.join(PY_SPY_OPTIONS)}, {RATE_HZ} Hz, during '{label}': "
                    "Python functions while holding the GIL")
            titles = {"self": "self", "inclusive": "inclusive"}
        lines = [head]
        for name, data in summary.items():
            count = f"{data['samples']} samples (~{data['samples'] / RATE_HZ:.1f} s GIL-held)" \
                if data.get("samples") else ""
            lines.append(f"\n== {name} {count}")
            for key, title in titles.items():
                lines.append(f"  {title}:")
                lines += [f"    {share * 100:5.1f}%  {what}" for what, share in data[key]]
        (self._out_dir / f"{label}-{self.tool}-summary.txt").write_text("\n".join(lines) + "\n")
