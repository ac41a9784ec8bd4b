"""The package's shape: no import cycle, the agent imports nothing of the rest, every
module imports, and tasks.py reaches targets only through the registry."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "imagebake"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes anywhere (function bodies too), except under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _with_parents(name: str) -> set[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)


def imports_in(path: Path, package: str) -> set[str]:
    """The imagebake modules the file at PATH (in PACKAGE) imports, lazily or not."""
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import sub` imports the submodule when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        for target in targets:
            if target.split(".")[0] == "imagebake":
                found |= _with_parents(target)
    return found


def imports_of(name: str) -> set[str]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in(path, package) - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_relative_and_function_level_imports():
    assert "imagebake.bake.build" in GRAPH["imagebake.targets.docker.cluster"]  # in a function
    assert "imagebake.clients.aws" in GRAPH["imagebake.bake.source_ami"]  # from ..clients import


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_agent_imports_nothing_of_the_rest():
    for name, imported in GRAPH.items():
        if name == "imagebake.agent" or name.startswith("imagebake.agent."):
            outside = {m for m in imported if m != "imagebake.agent"
                       and not m.startswith("imagebake.agent.") and m != "imagebake"}
            assert not outside, (name, outside)


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_bake_does_not_depend_on_targets():
    # images come before instances: targets read the bake's records, never the reverse
    for name, imported in GRAPH.items():
        if _under(name, "imagebake.bake"):
            assert not {m for m in imported if _under(m, "imagebake.targets")}, name


def test_targets_sit_below_the_operations_and_know_nothing_of_disco():
    # lifetime and shrink are operations over a target; imagebake.disco is a use of a
    # cluster; a target is a place to run
    above = ("imagebake.lifetime", "imagebake.shrink", "imagebake.disco")
    for name, imported in GRAPH.items():
        if _under(name, "imagebake.targets"):
            bad = {m for m in imported if any(_under(m, a) for a in above)}
            assert not bad, (name, bad)


def test_the_aws_launch_plan_is_shared_not_passed_between_cluster_and_dryrun():
    assert "imagebake.targets.aws.cluster" not in GRAPH["imagebake.targets.aws.dryrun"]
    assert "imagebake.targets.aws.plan" in GRAPH["imagebake.targets.aws.dryrun"]


def test_the_layering_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ..targets import aws\n    from ...lifetime import x\n")
    assert imports_in(bad, "imagebake.bake") >= {"imagebake.targets", "imagebake.targets.aws"}
    assert "imagebake.lifetime" in imports_in(bad, "imagebake.targets.docker")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_tasks_reach_targets_only_through_the_registry():
    imported = imports_in(ROOT / "tasks.py", "")
    assert "imagebake.targets" in imported
    assert not {m for m in imported if m.startswith("imagebake.targets.")}, imported


def test_every_target_implements_the_interface():
    from imagebake import targets
    from imagebake.targets.base import Target

    for name in targets.names():
        target = targets.get(name)
        assert isinstance(target, Target) and target.name == name
        for method in ("_check_launch", "_launch", "_check_grow", "_grow", "_destroy",
                       "_ssh_argv", "status", "tunnel", "summary", "exec_argv"):
            assert getattr(type(target), method) is not getattr(Target, method), (name, method)



TARGET_NAMES = {"aws", "docker", "qemu"}


def name_switches(path: Path) -> list[str]:
    """Where the file compares a value with a target's name or keys a table by target
    names ("line: text"): what only imagebake/targets/ may do."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        named = False
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any(isinstance(s, ast.Constant) and s.value in TARGET_NAMES for s in sides)
            named = named or any(isinstance(s, (ast.Tuple, ast.List, ast.Set)) and any(
                isinstance(e, ast.Constant) and e.value in TARGET_NAMES for e in s.elts)
                for s in node.comparators)
        elif isinstance(node, ast.Dict):
            named = sum(isinstance(k, ast.Constant) and k.value in TARGET_NAMES
                        for k in node.keys) >= 2
        if named:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:60]}")
    return found


def test_the_name_switch_finder_finds_one(tmp_path):
    code = tmp_path / "x.py"
    code.write_text("if t == 'aws':\n    pass\nT = {'docker': 1, 'qemu': 2}\nok = t in ('qemu',)\n")
    assert len(name_switches(code)) == 3


def test_no_target_name_is_compared_outside_targets():
    files = [ROOT / "tasks.py"] + [p for n, p in MODULES.items()
                                   if not _under(n, "imagebake.targets")
                                   and not _under(n, "imagebake.agent")]
    switches = [s for path in files for s in name_switches(path)]
    assert not switches, "\n".join(switches)
