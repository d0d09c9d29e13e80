"""Generates the Python code of protos/ (messages, gRPC stubs, .pyi stubs) into a folder."""

import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def proto_files() -> list[pathlib.Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(out_dir: pathlib.Path) -> None:
    """Writes the generated package tree for every .proto file into out_dir."""
    import grpc_tools

    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    plugin = pathlib.Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"-I{PROTOS}", f"-I{well_known}",
        f"--python_out={out_dir}", f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={plugin}", f"--mypy_grpc_out={out_dir}",
        *[str(p.relative_to(PROTOS)) for p in proto_files()],
    ]
    subprocess.run(command, check=True, cwd=PROTOS)


def regenerate(target: pathlib.Path) -> None:
    """Replaces target with freshly generated code, atomically enough for make."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = pathlib.Path(scratch) / "gen"
        generate(fresh)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(fresh, target)


if __name__ == "__main__":
    regenerate(ROOT / (sys.argv[1] if len(sys.argv) > 1 else "gen"))
