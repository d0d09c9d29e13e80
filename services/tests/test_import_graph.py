"""Import rules: the orchestrator's rooms import only what their role allows, and no module of services/ takes part in an import cycle.

Every import counts, wherever it stands (a function body, an `if TYPE_CHECKING:` block): a cycle
hidden behind TYPE_CHECKING is still a cycle for the reader.
"""

import ast
import pathlib

SERVICES = pathlib.Path(__file__).resolve().parents[1]
ORCHESTRATOR = "services.orchestrator"

# Room -> the other rooms of the orchestrator it may import. `errors` and `config` are leaves
# anyone may use; `server` wires everything and `__main__` runs it.
ALLOWED = {
    "frontdoor": {"queue", "errors"},
    "pipeline": {"instructions", "units", "queue", "errors"},
    "instructions": {"units", "errors"},
    "units": set(),
    "queue": set(),
    "errors": set(),
    "config": {"queue"},
    "tests": None,  # the tests may reach anything
    "server": None,
    "__main__": None,
}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(SERVICES.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path) -> set[str]:
    """The services.* modules a file imports (`from a import b` counts as a.b when b is a module)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("services")}


def graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in SERVICES.rglob("*.py")}
    return {name: {target for target in imports_of(path) if target in files and target != name}
            for name, path in files.items()}


def room_of(module: str) -> str | None:
    if not module.startswith(ORCHESTRATOR + "."):
        return None
    return module.removeprefix(ORCHESTRATOR + ".").split(".")[0]


def rule_breaches(edges: dict[str, set[str]]) -> list[str]:
    """Each import of one orchestrator room by another that ALLOWED does not permit."""
    broken = []
    for module, targets in edges.items():
        room = room_of(module)
        if room is None:
            continue
        if room not in ALLOWED:
            broken.append(f"{module}: room {room!r} is not in the import rule; add it to ALLOWED")
            continue
        for target in targets:
            target_room = room_of(target)
            if ALLOWED[room] is not None and target_room not in (None, room) and target_room not in ALLOWED[room]:
                broken.append(f"{module} imports {target} ({room} -> {target_room})")
    return sorted(broken)


def test_each_orchestrator_room_imports_only_the_rooms_its_role_allows():
    assert rule_breaches(graph()) == []


def test_the_rule_reports_a_forbidden_import_and_an_unknown_room():
    edges = {
        "services.orchestrator.units.users": {"services.orchestrator.instructions.run"},
        "services.orchestrator.queue.amqp": {"services.orchestrator.queue.transport"},
        "services.orchestrator.misc": set(),
    }
    assert rule_breaches(edges) == [
        "services.orchestrator.misc: room 'misc' is not in the import rule; add it to ALLOWED",
        "services.orchestrator.units.users imports services.orchestrator.instructions.run (units -> instructions)",
    ]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_module_of_services_takes_part_in_an_import_cycle():
    edges = graph()
    # A package's __init__ importing its own modules is how packages work, not a cycle to fix.
    edges = {module: {t for t in targets if not module.startswith(t + ".")} for module, targets in edges.items()}
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_the_cycle_finder_finds_a_cycle_hidden_three_modules_deep():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a"}}) is None
