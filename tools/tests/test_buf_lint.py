"""The protos pass `buf lint` with the STANDARD rules (buf comes from the npm registry)."""

import shutil
import subprocess

import pytest

from tools import protogen

BUF = "@bufbuild/buf@1.75.0"


def test_protos_pass_buf_lint():
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not installed; `make lint` needs Node.js")
    run = subprocess.run([npx, "--yes", BUF, "lint"], cwd=protogen.PROTOS, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
