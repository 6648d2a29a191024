"""The import rules of docs/architecture.md, checked on the source.

Every module of `chatbot` and `ui` is parsed with `ast`; every import counts, the ones inside
functions and under `TYPE_CHECKING` too (an import deferred to call time is still a dependency).
A unit is a package of `chatbot` (`chatbot.runs`) or one of the top-level modules of the ground
floor (`chatbot.config`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GROUND = {"config", "errors", "types", "storage", "workspace", "models", "hardware"}
LAYERS: dict[str, int] = {
    **dict.fromkeys(GROUND, 0),
    "ingest": 1,
    "brand": 2,
    "engine": 3,
    "prepare": 3,
    "feedback": 4,
    "training": 5,
    "runs": 6,
    "scorecard": 7,
    "check": 8,
    "export": 8,
    "serving": 9,
    "service": 10,
    "cli": 11,
}
"""A unit imports only units of lower layers (the ground floor's modules also each other)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every absolute import in the file, nested ones included."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            for alias in node.names:  # `from chatbot import jobs` imports chatbot.jobs
                yield f"{node.module}.{alias.name}", node.lineno


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "ui":
        return "ui"
    if parts[0] != "chatbot" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _edges(package: str) -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, "module:line") for every import between two units."""
    edges: set[tuple[str, str, str]] = set()
    for path in sorted((ROOT / package).rglob("*.py")):
        module = _module_name(path)
        source = _unit(module)
        if source is None:
            continue
        for imported, line in _imports(path):
            target = _unit(imported)
            if target is not None and target != source:
                edges.add((source, target, f"{module}:{line}"))
    return sorted(edges)


def test_every_chatbot_unit_has_a_layer():
    packages = {p.parent.name for p in (ROOT / "chatbot").glob("*/__init__.py")}
    modules = {p.stem for p in (ROOT / "chatbot").glob("*.py") if p.stem != "__init__"}
    missing = sorted((packages | modules) - set(LAYERS))
    assert not missing, f"give these a layer in docs/architecture.md and here: {missing}"


def test_units_import_only_lower_layers():
    wrong = [
        f"{where}: {source} (layer {LAYERS[source]}) imports {target} (layer {LAYERS[target]})"
        for source, target, where in _edges("chatbot")
        if target != "ui"
        and LAYERS[target] >= LAYERS[source]
        and not (source in GROUND and target in GROUND)
    ]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_ground_floor_imports_no_package():
    wrong = [
        f"{where}: {target}"
        for source, target, where in _edges("chatbot")
        if source in GROUND and target not in GROUND
    ]
    assert not wrong, "the ground floor imports a package:\n" + "\n".join(wrong)


def test_engine_knows_nothing_of_training_runs_or_faces():
    banned = {"training", "runs", "scorecard", "check", "export", "cli", "serving", "ui"}
    wrong = [
        f"{where}: {target}"
        for source, target, where in _edges("chatbot")
        if source == "engine" and target in banned
    ]
    assert not wrong, "the engine imports:\n" + "\n".join(wrong)


def test_only_the_command_line_imports_the_faces():
    # `brandvoice ui` starts the app, so cli -> ui is the one way in; nothing imports cli.
    wrong = [
        f"{where}: {target}"
        for source, target, where in _edges("chatbot") + _edges("ui")
        if target == "cli" or (target == "ui" and source != "cli")
    ]
    assert not wrong, "a face imported from below:\n" + "\n".join(wrong)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_package_graph_is_acyclic():
    edges = _edges("chatbot")
    graph: dict[str, set[str]] = {}
    for source, target, _ in edges:
        graph.setdefault(source, set()).add(target)
    cycle = _find_cycle(graph)
    if cycle:
        hops = []
        for a, b in zip(cycle, cycle[1:], strict=False):
            where = sorted(w for s, t, w in edges if (s, t) == (a, b))
            hops.append(f"{a} -> {b} ({', '.join(where[:3])})")
        raise AssertionError("import cycle between packages:\n" + "\n".join(hops))


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}}) is None


UI_MAY_IMPORT = {"chatbot.service", "chatbot.engine"}
"""All the app sees of `chatbot`: the application layer (which also re-exports the ground floor's
names a face needs) and the engine's public names (the package's `__all__`, none of its
modules)."""


def _public_names(package: str) -> set[str]:
    tree = ast.parse((ROOT / package.replace(".", "/") / "__init__.py").read_text("utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def _app_imports() -> Iterator[tuple[str, list[str], str]]:
    """(imported chatbot module, names taken from it, "module:line") for every import in ui/."""
    for path in sorted((ROOT / "ui").rglob("*.py")):
        where = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "chatbot":
                        yield alias.name, [], f"{where}:{node.lineno}"
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "chatbot":
                    for alias in node.names:
                        yield f"chatbot.{alias.name}", [], f"{where}:{node.lineno}"
                elif node.module.split(".")[0] == "chatbot":
                    names = [alias.name for alias in node.names]
                    yield node.module, names, f"{where}:{node.lineno}"


def test_the_app_imports_only_the_application_layer_and_the_engine():
    engine = _public_names("chatbot.engine")
    wrong = [
        f"{where}: {module} {sorted(set(names) - engine) if module in UI_MAY_IMPORT else ''}"
        for module, names, where in _app_imports()
        if module not in UI_MAY_IMPORT or (module == "chatbot.engine" and not set(names) <= engine)
    ]
    assert not wrong, (
        "ui/ may import only chatbot.service and chatbot.engine's public names:\n"
        + "\n".join(wrong)
    )
