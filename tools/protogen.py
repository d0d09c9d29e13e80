"""Generates the Python code of protos/ (messages, gRPC stubs, .pyi stubs): the one protoc driver.

`make proto` runs it for the suite (`python -m tools.protogen gen`); the client package's setup.py
runs the same `generate` into its build directory, from a copy of this file and of protos/ when it
builds from an sdist. Only the standard library is imported at the top, so that copy runs alone.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PLUGIN = "protoc-gen-mypy_grpc"

# gen/ is its own small distribution, installed editable into the venv by `make proto`, so that
# `llmchatlinker.<unit>.v1` imports from anywhere; it is a portion of the `llmchatlinker`
# namespace, beside the wire format (wire/) and the client (clients/python/).
GEN_PYPROJECT = """\
# Written by tools/protogen.py; gen/ is generated, never edited or committed.
[project]
name = "llmchatlinker-gen"
version = "0.0.0"
description = "LLMChatLinker's generated protobuf and gRPC modules, for the suite's own venv"
requires-python = ">=3.11"

[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[tool.setuptools]
# gen/ holds nothing but the llmchatlinker tree, so the editable install simply puts gen/ on the
# path, and code generated for a new proto is importable without installing again.
package-dir = {"" = "."}

[tool.setuptools.packages.find]
include = ["llmchatlinker*"]
namespaces = true
"""


def proto_files(protos: pathlib.Path = PROTOS) -> list[pathlib.Path]:
    return sorted(protos.rglob("*.proto"))


def _plugin() -> str:
    """The mypy-protobuf plugin: beside this Python, else on PATH (pip's isolated build env)."""
    search = os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(PLUGIN, path=search)
    if found is None:
        raise SystemExit(f"{PLUGIN} not found: install mypy-protobuf (pinned in pyproject.toml)")
    return found


def generate(out_dir: pathlib.Path, protos: pathlib.Path = PROTOS) -> list[pathlib.Path]:
    """Writes the generated package tree for every .proto file under protos into out_dir.

    Returns the files written. No `__init__.py` is written: `llmchatlinker` is a namespace package.
    """
    import grpc_tools

    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    out_dir = pathlib.Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.rglob("*"))
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"-I{protos}", f"-I{well_known}",
        f"--python_out={out_dir}", f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin()}", f"--mypy_grpc_out={out_dir}",
        *[str(p.relative_to(protos)) for p in proto_files(protos)],
    ]
    subprocess.run(command, check=True, cwd=protos)
    return sorted(p for p in set(out_dir.rglob("*")) - before if p.is_file())


def regenerate(target: pathlib.Path) -> None:
    """Replaces target with freshly generated code and its pyproject, atomically enough for make."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = pathlib.Path(scratch) / "gen"
        generate(fresh)
        (fresh / "pyproject.toml").write_text(GEN_PYPROJECT)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(fresh, target)


if __name__ == "__main__":
    regenerate(ROOT / (sys.argv[1] if len(sys.argv) > 1 else "gen"))
