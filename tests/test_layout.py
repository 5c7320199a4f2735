"""The import graph: packages import downwards only, never in a circle, and never another package's
private modules (the README's "Layout" section describes the rooms these rules keep apart)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("adams", "smoothness", "analysis")  # each may import only those before it
CLIENTS = ("notebooks", "benchmarks", "examples")  # may import every package, public names only


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Modules of ours that ``path`` imports, at any depth of the file (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from pkg import sub` imports the module pkg.sub
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _is_module(sub) else node.module)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    return {_module(path): _imports(path) for folder in PACKAGES + CLIENTS
            for path in sorted((ROOT / folder).rglob("*.py"))}


def _private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split(".")[1:])


def _upward(graph) -> list[tuple[str, str]]:
    rank = {name: i for i, name in enumerate(PACKAGES)}
    return [(m, o) for m, outs in graph.items() if m.split(".")[0] in rank
            for o in outs if rank[o.split(".")[0]] > rank[m.split(".")[0]]]


def _crossing(graph) -> list[tuple[str, str]]:
    return [(m, o) for m, outs in graph.items() for o in outs if _private(o) and o.split(".")[0] != m.split(".")[0]]


def _circles(graph) -> list[list[str]]:
    graph = {m: {o for o in outs if o != m} for m, outs in graph.items()}
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done

    def circle_from(m, path):
        state[m] = 1
        for o in sorted(graph.get(m, ())):
            if state.get(o) == 1:
                return path[path.index(o):] + [o]
            if o not in state and (found := circle_from(o, path + [o])):
                return found
        state[m] = 2
        return None

    return [c for m in sorted(graph) if m not in state and (c := circle_from(m, [m]))]


def test_packages_import_only_downwards():
    assert _upward(_graph()) == []


def test_no_module_imports_another_packages_private_module():
    assert _crossing(_graph()) == []


def test_no_circle_of_imports():
    assert _circles(_graph()) == []


def _rooms(graph, package: str = "analysis") -> dict[str, set[str]]:
    """The graph between the sub-packages (and top-level modules) of ``package``."""
    def room(name: str) -> str | None:
        parts = name.split(".")
        return parts[1] if parts[0] == package and len(parts) > 1 else None

    rooms: dict[str, set[str]] = {}
    for m, outs in graph.items():
        if room(m):
            rooms.setdefault(room(m), set()).update(r for o in outs if (r := room(o)) and r != room(m))
    return rooms


def test_the_subjects_of_analysis_form_no_circle():
    """stationary, bounds, training, timing and report depend on each other one way only."""
    assert _circles(_rooms(_graph())) == []


def test_the_checks_can_fail():
    """Power: each rule recognises a graph that breaks it."""
    assert _upward({"adams.theory": {"analysis.report"}}) == [("adams.theory", "analysis.report")]
    assert _crossing({"analysis.timing.steptime": {"adams._fused"}, "adams.optimizer": {"adams._fused"}}) == [
        ("analysis.timing.steptime", "adams._fused")]
    assert _circles({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == [["a.x", "a.y", "a.z", "a.x"]]
    assert _is_module("adams.functional") and not _is_module("adams.AdamS")
    assert _circles(_rooms({"analysis.report.repro": {"analysis.timing.steptime"},
                            "analysis.timing.steptime": {"analysis.report.machine"}})) != []
