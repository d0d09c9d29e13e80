"""Tooling venvs of the bench's own (LiteLLM, py-spy), made on first use and never suite deps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def tool_venv(name: str, requirements: list[str], probe: str) -> Path:
    """bench/<name> with the requirements installed; returns its bin/ directory.

    `probe` is an executable in bin/ whose presence means the install is done.
    """
    venv = BENCH / name
    bin_dir = venv / "bin"
    if (bin_dir / probe).exists():
        return bin_dir
    print(f"  installing {' '.join(requirements)} into {venv} (first use only; a few minutes)", flush=True)
    log = BENCH / "results" / f"{name.strip('.')}-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # The base interpreter, so the tool venv does not inherit the suite's .venv.
    base = getattr(sys, "_base_executable", sys.executable)
    with open(log, "wb") as out:
        subprocess.run([base, "-m", "venv", str(venv)], check=True, stdout=out, stderr=subprocess.STDOUT)
        result = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", *requirements],
                                stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0 or not (bin_dir / probe).exists():
        raise RuntimeError(f"installing {requirements} failed; see {log}")
    return bin_dir
