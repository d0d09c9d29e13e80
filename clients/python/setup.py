"""Builds the client package with the protobuf and gRPC modules generated from the protos.

The generated modules are never kept in this folder: `build_py` runs the repository's one protoc
driver, tools/protogen.py, on protos/ straight into the build directory. An sdist carries a copy of
both (protogen.py and protos/ at its top), so it builds away from the repository.
"""

import importlib.util
import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = pathlib.Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
# An sdist carries its own copies; in the repository they sit two levels up.
PROTO_ROOTS = (HERE / "protos", REPOSITORY / "protos")
DRIVERS = (HERE / "protogen.py", REPOSITORY / "tools" / "protogen.py")


def _first(candidates: tuple[pathlib.Path, ...], usable) -> pathlib.Path:
    for candidate in candidates:
        if usable(candidate):
            return candidate
    raise SystemExit(f"none of {', '.join(map(str, candidates))} found")


def proto_root() -> pathlib.Path:
    return _first(PROTO_ROOTS, lambda root: any(root.rglob("*.proto")))


def driver_file() -> pathlib.Path:
    return _first(DRIVERS, pathlib.Path.is_file)


def load_driver():
    """tools/protogen.py (or the sdist's copy) as a module; it imports only the standard library."""
    spec = importlib.util.spec_from_file_location("llmchatlinker_protogen", driver_file())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithProtos(build_py):
    """build_py that adds the generated llmchatlinker.<unit>.v1 modules to the build."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            # An editable install maps only the source folder; in the repository's venv the
            # generated modules come from gen/ (`make proto`), which is installed beside it.
            return
        generated = load_driver().generate(pathlib.Path(self.build_lib), proto_root())
        self.announce(f"generated {len(generated)} protobuf/gRPC modules", level=2)


class SdistWithProtos(sdist):
    """sdist that carries a copy of the protos and of the driver, so it builds away from the repository."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = pathlib.Path(base_dir)
        if not (target / "protos").exists():
            shutil.copytree(proto_root(), target / "protos", ignore=shutil.ignore_patterns("buf.*"))
        if not (target / "protogen.py").exists():
            shutil.copy2(driver_file(), target / "protogen.py")


setup(cmdclass={"build_py": BuildWithProtos, "sdist": SdistWithProtos})
