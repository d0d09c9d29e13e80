"""Builds the client package with the protobuf and gRPC modules generated from the protos.

The generated modules are never kept in this folder: `build_py` runs grpc_tools.protoc on the
repository's protos/ (or on the copy an sdist carries) straight into the build directory.
"""

import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = pathlib.Path(__file__).resolve().parent
# In the repository the protos sit two levels up; an sdist carries its own copy.
PROTO_ROOTS = (HERE / "protos", HERE.parent.parent / "protos")


def proto_root() -> pathlib.Path:
    for root in PROTO_ROOTS:
        if any(root.rglob("*.proto")):
            return root
    raise SystemExit(f"no .proto files found in {' or '.join(map(str, PROTO_ROOTS))}")


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Runs protoc on every .proto file; returns the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    root = proto_root()
    out_dir = out_dir.resolve()
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p) for p in root.rglob("*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.rglob("*"))
    status = protoc.main(["grpc_tools.protoc", f"-I{root}", f"-I{well_known}", f"--python_out={out_dir}",
                          f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *protos])
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    return sorted(p for p in set(out_dir.rglob("*")) - before if p.is_file())


class BuildWithProtos(build_py):
    """build_py that adds the generated llmchatlinker.<unit>.v1 modules to the build."""

    def run(self) -> None:
        super().run()
        generated = generate(pathlib.Path(self.build_lib))
        self.announce(f"generated {len(generated)} protobuf/gRPC modules", level=2)


class SdistWithProtos(sdist):
    """sdist that carries a copy of the protos, so it builds away from the repository."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = pathlib.Path(base_dir) / "protos"
        if not target.exists():
            shutil.copytree(proto_root(), target, ignore=shutil.ignore_patterns("buf.*"))


setup(cmdclass={"build_py": BuildWithProtos, "sdist": SdistWithProtos})
