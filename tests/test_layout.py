"""The package's rooms keep to their rules (docs/architecture.md, "The map"): no import circle,
`runtime/` free of Ray, Redis and settings, nothing below the launcher importing it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "raylive"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> what it imports at module level or in functions (absolute names)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
        graph[name] = found
    return graph


GRAPH = _imports()


def _internal(name: str) -> str | None:
    """The raylive module `name` refers to (a module, or a name inside one)."""
    while name:
        if name in GRAPH:
            return name
        name = name.rpartition(".")[0]
    return None


def test_there_is_no_import_circle() -> None:
    edges = {m: {t for i in imps if (t := _internal(i)) and t != m and not m.startswith(t + ".")} for m, imps in GRAPH.items()}
    # A package's __init__ importing its own children is no circle; drop parent -> child edges.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                pytest.fail("import circle: " + " -> ".join([*path[path.index(t) :], t]))
            if t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("raylive.runtime")))
def test_runtime_is_bytes_in_bytes_out(module: str) -> None:
    for imp in GRAPH[module]:
        top = imp.split(".")[0]
        assert top not in ("ray", "redis"), f"{module} imports {imp}"
        if top == "raylive":
            assert imp.startswith("raylive.runtime"), f"{module} imports {imp}"


def test_nothing_below_the_launcher_imports_it() -> None:
    for module, imps in GRAPH.items():
        if module.startswith(("raylive.runtime", "raylive.actors", "raylive.serve_apps", "raylive.api", "raylive.store")):
            assert not [i for i in imps if i.startswith("raylive.launcher")], module


def test_the_stream_actor_loads_no_decoder() -> None:
    """A passthrough stream's worker never imports PyAV (≈ 5 MB of its USS): only the transcoder,
    processor hosts and the thumbnail maker decode. Ray imports the module of every actor class
    a worker makes a handle to: the stream actor asks the processor registry at each publish
    (numpy, which Ray's own serializers load in every worker, is not ours to keep out)."""
    modules = "raylive.actors.stream, raylive.actors.processor_registry"
    code = f"import sys, {modules}; print(sorted({{'av', 'numpy'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout
