"""The figures: one row each, printed as a table beside its floor, and written as JSON."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.floors import Floor


@dataclass
class Figure:
    """One measured figure on each path it was measured on; lower is better unless `higher_better`."""

    scenario: str
    name: str
    unit: str
    us: float | None
    direct: float | None = None
    litellm: float | None = None
    floor: Floor | None = None
    target: str = ""
    met: bool | None = None
    higher_better: bool = False
    note: str = ""
    # The original project's figure for the same workload, where one was measured (issue 18).
    original: float | None = None

    @property
    def vs_original(self) -> float | None:
        if self.us is None or not self.original:
            return None
        return self.us / self.original

    @property
    def vs_litellm(self) -> float | None:
        if self.us is None or not self.litellm:
            return None
        return self.us / self.litellm

    @property
    def vs_floor(self) -> float | None:
        if self.us is None or self.floor is None or not self.floor.value:
            return None
        return self.us / self.floor.value

    @property
    def ahead_of_litellm(self) -> bool | None:
        ratio = self.vs_litellm
        if ratio is None:
            return None
        return ratio > 1 if self.higher_better else ratio < 1


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if magnitude >= 0.1 else f"{value:.3f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _verdict(figure: Figure) -> str:
    parts = []
    if figure.met is not None:
        parts.append("met" if figure.met else "MISSED")
    if figure.ahead_of_litellm is not None:
        parts.append("ahead" if figure.ahead_of_litellm else "BEHIND LiteLLM")
    return ", ".join(parts) or "-"


HEADER = ("#", "figure", "unit", "direct", "us", "LiteLLM", "us/LiteLLM", "original", "us/original", "floor",
          "us/floor", "target", "verdict", "note")


def rows(figures: list[Figure]) -> tuple[list[tuple[str, ...]], list[str]]:
    """Table rows and the floor footnotes they point to ([a], [b], ...)."""
    footnotes: dict[str, str] = {}
    table = []
    for figure in figures:
        floor = "-"
        if figure.floor is not None:
            key = footnotes.setdefault(figure.floor.built_from, chr(ord("a") + len(footnotes)))
            floor = f"{_number(figure.floor.value)} [{key}]"
        table.append((figure.scenario, figure.name, figure.unit, _number(figure.direct), _number(figure.us),
                      _number(figure.litellm), _ratio(figure.vs_litellm), _number(figure.original),
                      _ratio(figure.vs_original), floor, _ratio(figure.vs_floor),
                      figure.target or "-", _verdict(figure), figure.note))
    return table, [f"[{key}] {text}" for text, key in footnotes.items()]


def text_table(figures: list[Figure]) -> str:
    table, footnotes = rows(figures)
    widths = [max(len(str(row[i])) for row in [HEADER, *table]) for i in range(len(HEADER))]
    line = lambda row: "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths))  # noqa: E731
    out = [line(HEADER), "  ".join("-" * w for w in widths), *map(line, table)]
    return "\n".join(out + ["", "floors (../shared/reference/floors.md):", *footnotes])


def markdown_table(figures: list[Figure]) -> str:
    table, footnotes = rows(figures)
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table]
    return "\n".join(out + ["", "Floors:", "", *(f"- {note}" for note in footnotes)])


def machine() -> dict:
    with open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except StopIteration:
        model = platform.machine()
    return {"nproc": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kib / 2**20, 1),
            "python": sys.version.split()[0], "kernel": platform.release(), "loadavg_at_start": load,
            "commit": _git_head()}


def _git_head() -> str:
    """HEAD, marked when the services differ from it (they are measured as they are on disk)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent.parent).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + (" + uncommitted changes in services/" if git("status", "--porcelain", "services") else "")
    except OSError:
        return ""


def write_json(path: Path, figures: list[Figure], extra: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**extra, "figures": [
        {**asdict(f), "floor": asdict(f.floor) if f.floor else None, "us_vs_litellm": f.vs_litellm,
         "us_vs_floor": f.vs_floor, "ahead_of_litellm": f.ahead_of_litellm, "us_vs_original": f.vs_original}
        for f in figures]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
