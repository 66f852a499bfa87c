"""The architecture's rules, read from the source: layers import downward only, no import cycles, every module in
a layer, and no module over 350 lines.

Every import counts: module level, inside functions (the lazy imports) and under ``if TYPE_CHECKING:``. An import
of ``a.b`` depends on ``a.b`` only (not on the package ``a``); ``from a import b`` depends on ``a.b`` when that is a
module, else on ``a``. Relative imports are resolved against the importing module.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "lipsync_render"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 350

# Bottom to top. A module may import its own layer or a lower one. An entry "x.*" claims the package x and every
# module under it; any other entry claims exactly that module ("lipsync_render" is the package's __init__).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "lipsync_render.errors",
            "lipsync_render.option_values",
            "lipsync_render.paths",
            "lipsync_render.json_bounded",
            "lipsync_render.store_choice",
            "lipsync_render.host",
            "lipsync_render.devices",
            "lipsync_render.lazy_imports",
        ),
    ),
    ("options", ("lipsync_render.options", "lipsync_render.option_schema", "lipsync_render")),
    (
        "core",
        (
            "lipsync_render.media.*",
            "lipsync_render.contract",
            "lipsync_render.model_shapes",
            "lipsync_render.onnx_graph",
            "lipsync_render.onnx_ops",
            "lipsync_render.model_input",
            "lipsync_render.torch_networks",
        ),
    ),
    ("package", ("lipsync_render.package.*",)),
    ("storage", ("lipsync_render.storage.*",)),
    ("synth", ("lipsync_render.synth.*",)),
    ("runtimes", ("lipsync_render.runtimes.*",)),
    ("planning", ("lipsync_render.planning.*",)),
    ("rendering", ("lipsync_render.rendering.*",)),
    ("apps", ("lipsync_render.jobs.*", "lipsync_render.diagnostics.*", "lipsync_render.review.*")),
    ("cli", ("lipsync_render.cli.*", "lipsync_render.__main__")),
]


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name; a package's ``__init__.py`` is the package's own name."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a (possibly relative) ``from`` target as written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``module`` imports anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, path.name == "__init__.py", node.level, node.module)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in known else source)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")} - {module}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {module: imports_of(module, path, known) for module, path in files.items()}


def layer_of(module: str) -> int | None:
    """Index of the layer that claims ``module`` (the most specific entry wins), or None."""
    best, best_length = None, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if entry.endswith(".*"):
                prefix = entry[:-2]
                matches = module == prefix or module.startswith(prefix + ".")
            else:
                prefix = entry
                matches = module == entry
            if matches and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_every_module_is_in_a_layer():
    unclaimed = sorted(module for module in module_files() if layer_of(module) is None)
    assert not unclaimed, "modules no layer claims: " + ", ".join(unclaimed)


def test_layers_import_downward_only():
    upward = []
    for module, targets in sorted(import_graph().items()):
        own = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{module} -> {target}  ({LAYERS[own][0]} imports {LAYERS[theirs][0]})")
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    cycles = [component for component in strongly_connected(import_graph()) if len(component) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(component) for component in sorted(cycles))


def test_no_module_is_over_the_line_limit():
    long = []
    for module, path in module_files().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            long.append(f"{module} ({lines} lines)")
    assert not long, f"modules over {MAX_LINES} lines: " + ", ".join(sorted(long))


def test_the_graph_reader_sees_every_kind_of_import(tmp_path):
    """Lazy, TYPE_CHECKING, relative and ``from package import module`` imports all give edges."""
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from lipsync_render import errors\n"
        "from . import paths\n"
        "if TYPE_CHECKING:\n"
        "    from lipsync_render.options import SessionOptions\n"
        "def f():\n"
        "    import lipsync_render.media.audio\n"
        "    from ..cli.app import main\n"
    )
    known = {
        "lipsync_render.errors",
        "lipsync_render.rendering.paths",
        "lipsync_render.cli.app",
        "lipsync_render.media.audio",
    }
    assert imports_of("lipsync_render.rendering.x", source, known) == {
        "lipsync_render.errors",
        "lipsync_render.options",
        "lipsync_render.media.audio",
        "lipsync_render.rendering.paths",
        "lipsync_render.cli.app",
    }
