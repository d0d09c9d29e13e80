"""The protos only grow: `buf breaking` against the previous commit finds nothing (as `make lint` runs it),
and it does find a change that would break callers."""

import pathlib
import shutil
import subprocess

import pytest

from tools import protogen

BUF = "@bufbuild/buf@1.75.0"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=protogen.PROTOS, capture_output=True, text=True)


def _breaking(source: pathlib.Path, against: str) -> subprocess.CompletedProcess:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not installed; `make lint` needs Node.js")
    return subprocess.run([npx, "--yes", BUF, "breaking", "--against", against], cwd=source,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def previous_commit() -> str:
    top = _git("rev-parse", "--show-toplevel")
    if top.returncode != 0 or _git("rev-parse", "--verify", "--quiet", "HEAD~1").returncode != 0:
        pytest.skip("not a git checkout with a previous commit (a shallow clone?)")
    return f"{top.stdout.strip()}/.git#ref=HEAD~1,subdir=protos"


def test_the_protos_break_nothing_of_the_previous_commit(previous_commit):
    run = _breaking(protogen.PROTOS, previous_commit)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_changed_field_type_is_reported(previous_commit, tmp_path):
    copy = tmp_path / "protos"
    shutil.copytree(protogen.PROTOS, copy)
    proto = copy / "llmchatlinker" / "llm" / "v1" / "llm_service.proto"
    proto.write_text(proto.read_text().replace("  string finish_reason = 2;", "  int32 finish_reason = 2;", 1))

    run = _breaking(copy, previous_commit)

    assert run.returncode != 0 and 'changed type from "string" to "int32"' in run.stdout
