"""The generated code in gen/ must be exactly what protos/ generates now."""

import filecmp
import pathlib

from tools import protogen


def _tree(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".stamp"}


def test_generated_code_matches_the_protos(tmp_path):
    fresh = tmp_path / "gen"
    protogen.generate(fresh)
    committed = protogen.ROOT / "gen"
    assert _tree(fresh) == _tree(committed), "run `make proto`: gen/ lacks or has extra files"
    stale = [name for name in _tree(fresh) if not filecmp.cmp(fresh / name, committed / name, shallow=False)]
    assert not stale, f"run `make proto`: gen/ is stale in {stale}"


def test_every_instruction_type_has_one_typed_request():
    from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

    oneof = pb.Instruction.DESCRIPTOR.oneofs_by_name["instruction"]
    types = [name for name in pb.InstructionType.keys() if name != "INSTRUCTION_TYPE_UNSPECIFIED"]
    assert len(types) == 26
    assert sorted(f.name.upper() for f in oneof.fields) == sorted(t.removeprefix("INSTRUCTION_TYPE_") for t in types)
