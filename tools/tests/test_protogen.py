"""The generated code in gen/ must be exactly what protos/ generates now."""

import filecmp
import pathlib

from tools import protogen


def _tree(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_matches_the_protos(tmp_path):
    fresh = tmp_path / "gen"
    protogen.generate(fresh)
    fresh, committed = fresh / "llmchatlinker", protogen.ROOT / "gen" / "llmchatlinker"
    assert _tree(fresh) == _tree(committed), "run `make proto`: gen/ lacks or has extra files"
    stale = [name for name in _tree(fresh) if not filecmp.cmp(fresh / name, committed / name, shallow=False)]
    assert not stale, f"run `make proto`: gen/ is stale in {stale}"


def test_every_instruction_type_has_one_typed_request():
    from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

    oneof = pb.Instruction.DESCRIPTOR.oneofs_by_name["instruction"]
    types = [name for name in pb.InstructionType.keys() if name != "INSTRUCTION_TYPE_UNSPECIFIED"]
    assert len(types) == 29  # the original's 26, USAGE_LIST, USER_LIMITS_SET and USER_LIMITS_GET
    assert sorted(f.name.upper() for f in oneof.fields) == sorted(t.removeprefix("INSTRUCTION_TYPE_") for t in types)


def test_gen_is_a_package_the_venv_imports_from():
    import llmchatlinker.chat.v1.chat_service_pb2 as generated

    assert (protogen.ROOT / "gen" / "pyproject.toml").read_text() == protogen.GEN_PYPROJECT
    assert pathlib.Path(generated.__file__).is_relative_to(protogen.ROOT / "gen")


def test_protogen_is_the_only_protoc_driver():
    """The client's build runs tools/protogen.py too; no other code runs protoc itself."""
    def ours(path: pathlib.Path) -> bool:  # not a venv, generated or built code, nor this test
        parts = path.relative_to(protogen.ROOT).parts
        return not any(part.startswith(".") or part in ("gen", "build", "node_modules") for part in parts) \
            and path != pathlib.Path(__file__).resolve()

    sources = [p for p in protogen.ROOT.rglob("*.py") if ours(p)]
    drivers = [p for p in sources if "grpc_tools.protoc" in p.read_text() or "protoc.main" in p.read_text()]
    assert drivers == [protogen.ROOT / "tools" / "protogen.py"]
