"""The architecture, as a test: imports point down the layers, and no subpackages import each other in a cycle.

Layers, top to bottom (docs/architecture.md draws the same picture)::

    cli                         the command line; the napari plugin sits here too
    api, evaluation             public entry points; the evaluation protocols
    pipeline                    volumes from planes, in-plane upscaling, streaming
    engines                     one interface, a registry, every method
    models, diffusion,          networks; the sampling loop and schedules;
    training, metrics           the fitting loop, data, degradations, masks, losses; scores
    io, runtime, grid, ...      files and axes; hardware; the plane grid; configs, model files
    errors

A module may import from its own layer or any layer below; an arrow up fails here with the
module, the line and the layers involved. The walk reads the source with ``ast`` (lazy imports
inside functions count too) and needs no import of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "volsr"

LAYERS: list[set[str]] = [
    {"errors", "_lazy"},
    {"config", "checkpoint", "normalize", "grid", "samples", "io", "runtime"},
    {"models", "diffusion", "training", "metrics"},
    {"engines"},
    {"pipeline"},
    {"api", "evaluation"},
    {"cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(module: str) -> str | None:
    """``volsr.io.tiff`` -> ``io``; the package root itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "volsr" else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every volsr import in a file, relative ones resolved."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("volsr"):
                continue
            if target == "volsr" or target.count(".") == 0:  # `from . import io` names submodules
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("volsr.")]
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_subpackage_and_top_module_has_a_layer():
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()} - {"__init__"}
    assert units - set(RANK) == set(), "new folders or modules must be given a layer in LAYERS (and the docs)"


def test_imports_point_down_the_layers():
    upward = []
    for path in _modules():
        here = _unit(_module_name(path))
        if here is None:  # volsr/__init__.py: the facade over everything
            continue
        for line, target in _imports(path):
            if target == "volsr.__version__":  # the one name every layer may read from the root
                continue
            there = _unit(target)
            if there not in RANK:  # `from .. import restore` reaches the facade, which imports everything
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} from the package root")
            elif RANK[there] > RANK[here]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}: "
                              f"{here} (layer {RANK[here]}) -> {there} (layer {RANK[there]})")
    assert not upward, "imports that run back up the layers:\n" + "\n".join(upward)


def _unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _modules():
        here = _unit(_module_name(path))
        if here is None:
            continue
        for _, target in _imports(path):
            there = _unit(target)
            if there is not None and there != here:
                graph.setdefault(here, set()).add(there)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_subpackages():
    cycle = _cycle(_unit_graph())
    assert cycle is None, "subpackages import each other in a cycle: " + " -> ".join(cycle or [])


def test_the_walk_sees_relative_lazy_and_upward_imports(tmp_path, monkeypatch):
    """The checker itself: a planted upward arrow and a cycle are found (so the tests above can fail)."""
    pkg = tmp_path / "volsr"
    (pkg / "engines").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engines" / "__init__.py").write_text("")
    (pkg / "engines" / "bad.py").write_text("def f():\n    from ..api.restoring import restore\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert _imports(pkg / "engines" / "bad.py") == [(2, "volsr.api.restoring")]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


@pytest.mark.parametrize("plugin_file", sorted((ROOT / "napari_plugin").rglob("*.py")), ids=lambda p: p.name)
def test_the_napari_plugin_stays_above_the_pipeline(plugin_file):
    """The widgets are shells over the API: they never reach into the pipeline, the sampler or the training loop."""
    tree = ast.parse(plugin_file.read_text())
    targets = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level]
    targets += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    inner = [t for t in targets if _unit(t) in {"pipeline", "diffusion", "models", "runtime", "cli"}]
    assert not inner, f"{plugin_file.name} imports {inner}; go through volsr.api instead"
