"""The package's shape: imports point down, sit at module top, and the core needs no notebook.

The import graph is read from the source with `ast`, imports placed inside functions
included, so a cycle cannot hide behind a function-level import (issue 16).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "nbimages"

# Third-party (and a few slow standard-library) modules that may be imported inside a
# function, and why: each is optional at run time or too slow to load for `import nbimages`,
# `nbimages --help` or an inspection of a tar.
LAZY_ALLOWED = {
    "docker": "the Docker SDK, only when the Docker engine is used",
    "pandas": "~0.3 s to import; the CLI's --help and the store need none of it",
    "ipywidgets": "only in a live kernel",
    "IPython": "only in a live kernel (the display of results, the magics)",
    "tqdm": "progress bars, only when something is transferred",
    "requests": "~0.1 s; only when a registry is contacted",
    "urllib3": "with requests",
    "http": "http.client with ssl and email, ~10 ms: only to name a registry's stream errors",
    "zstandard": "only for zstd layers",
    "isal": "only when a layer is compressed or read",
    "installer": "only for pip steps",
    "pathspec": "only for .dockerignore files",
    "nbformat": "only to read notebooks",
    "filelock": "only when the store is written",
    "jupyter_client": "~0.15 s; only when an image kernel is installed, listed, removed or run",
    "nbclient": "~0.9 s; only when a notebook is executed (nbimages execute, verify --execute)",
    "cryptography": "only when an apk step checks an APKINDEX signature",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """(imported module, line, at_top) for every import statement in the module."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    top = {id(n) for n in tree.body}
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            # still run when the module is imported; a TYPE_CHECKING import is a dependency
            # too (a type checker follows it), so it counts for cycles and layers
            top |= {id(c) for c in ast.walk(n)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, is_package, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in modules else target), node.lineno, id(node) in top


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _line, _top in _imports(name, path, modules):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_import_graph_has_no_cycle():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles among nbimages modules:\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


# The facade loads the public API on first use, so that `import nbimages` stays cheap: its
# __getattr__ and load_ipython_extension are the one place a package module is imported late.
FACADE = "nbimages"


def test_package_modules_are_imported_at_module_top():
    modules = _modules()
    inside = [f"{path.relative_to(PKG.parent)}:{line} imports {target}"
              for name, path in modules.items() if name != FACADE
              for target, line, top in _imports(name, path, modules)
              if not top and (target == "nbimages" or target.startswith("nbimages."))]
    assert not inside, "package imports inside functions (move them to the top):\n" + "\n".join(inside)


def test_only_optional_heavy_dependencies_are_imported_lazily():
    modules = _modules()
    lazy = [f"{path.relative_to(PKG.parent)}:{line} imports {target}"
            for name, path in modules.items()
            for target, line, top in _imports(name, path, modules)
            if not top and not target.startswith("nbimages")
            and target.split(".")[0] not in LAZY_ALLOWED]
    assert not lazy, "imports inside functions that belong at the top:\n" + "\n".join(lazy)


def test_the_cycle_finder_sees_a_cycle_made_by_a_function_level_import(tmp_path, monkeypatch):
    """The check above can fail: two modules importing each other, one inside a function."""
    pkg = tmp_path / "nbimages"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    assert _cycles(_graph()) == [["nbimages.a", "nbimages.b"]]


def test_the_core_modules_import_no_skin():
    """Only notebook/ (and the cli) import IPython; nothing below imports a skin."""
    skins = ("nbimages.notebook", "nbimages.cli")
    graph = _graph()
    bad = [f"{m} -> {t}" for m, targets in graph.items() if not m.startswith(skins)
           for t in targets if t.startswith(skins) and m != "nbimages" and m != "nbimages.__main__"]
    assert not bad, "core modules importing a skin:\n" + "\n".join(bad)
    facade = [m for m, targets in graph.items() if FACADE in targets and not m.startswith(skins)]
    assert not facade, f"only the skins use the facade (nbimages/__init__.py): {facade}"
    modules = _modules()
    ipython = [f"{name}:{line}" for name, path in modules.items()
               for target, line, _top in _imports(name, path, modules)
               if target.split(".")[0] in ("IPython", "ipywidgets")
               and not name.startswith("nbimages.notebook")]
    assert not ipython, "IPython/ipywidgets imported outside nbimages.notebook: " + ", ".join(ipython)


NO_NOTEBOOK = textwrap.dedent('''
    import importlib.abc, sys

    class Absent(importlib.abc.MetaPathFinder):
        """IPython and ipywidgets cannot be imported in this process."""
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("IPython", "ipywidgets", "ipykernel"):
                raise ImportError(f"{name} is not installed here")
            return None

    sys.meta_path.insert(0, Absent())
    import nbimages
    from nbimages.cli import main

    nb, out = sys.argv[1], sys.argv[2]
    image = nbimages.build_notebook(nb, "nbtest/core:1")
    assert nbimages.verify(nb).ok
    handout = nbimages.handout(nb, out)
    assert handout.digest == image.digest
    insp = nbimages.inspect("store:nbtest/core:1")
    assert list(insp.layers["created_by"].str.contains("/app/hello.txt")) == [True]
    assert main(["inspect", "store:nbtest/core:1", "--files"]) == 0
    assert main(["verify", nb]) == 0
    loaded = sorted(m.split(".")[0] for m in sys.modules)
    assert "IPython" not in loaded and "ipywidgets" not in loaded, loaded
    print("core ok", image.digest)
''')


def test_the_core_builds_verifies_hands_out_and_inspects_without_ipython(tmp_path):
    """A notebook's image, built where IPython and ipywidgets cannot be imported at all."""
    cells = ["%load_ext nbimages", "%image from scratch",
             "%%image file /app/hello.txt\nhello from a cell\n", "%image env GREETING=hi",
             "img = %image build nbtest/core:1\n%image layers img"]
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None,
                     "outputs": [], "source": text} for i, text in enumerate(cells)]}
    path = tmp_path / "core.ipynb"
    path.write_text(json.dumps(nb))
    env = {**os.environ, "NBIMAGES_HOME": str(tmp_path / "home"), "NBIMAGES_PROGRESS": "0"}
    r = subprocess.run([sys.executable, "-c", NO_NOTEBOOK, str(path), str(tmp_path / "handout")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "core ok sha256:" in r.stdout


# The layers of ARCHITECTURE.md, bottom (0) to top; a module may import its own layer or lower.
LAYERS = [
    ("nbimages.errors", 0), ("nbimages.redact", 0), ("nbimages.atomic", 0), ("nbimages.progress", 0),
    ("nbimages.reference", 0), ("nbimages.verbs", 0), ("nbimages.docker_endpoint", 0),
    ("nbimages.oci.layout", 3), ("nbimages.oci.archive", 3), ("nbimages.oci.dockerarchive", 3),
    ("nbimages.oci", 1), ("nbimages.image", 2), ("nbimages.store", 3), ("nbimages.validate", 3),
    ("nbimages.registry", 4), ("nbimages.sources", 5), ("nbimages.builder", 6),
    ("nbimages.analysis.layerindex", 6), ("nbimages.analysis", 6), ("nbimages.engines", 7),
    ("nbimages.slurm", 7),
    ("nbimages.maintenance", 8), ("nbimages.kernel", 8),
    ("nbimages.workflow.session", 8), ("nbimages.workflow.freeze", 8),
    ("nbimages.commands.parsing", 9), ("nbimages.commands.steps", 9),
    ("nbimages.workflow", 10), ("nbimages.execution", 10), ("nbimages.commands", 11),
    ("nbimages.notebook", 12), ("nbimages.cli", 12), ("nbimages.__main__", 12), ("nbimages", 12),
]


def _layer(module: str) -> int:
    for prefix, level in LAYERS:  # the most specific entries come first
        if module == prefix or module.startswith(prefix + "."):
            return level
    raise AssertionError(f"{module} is in no layer of ARCHITECTURE.md: add it to LAYERS")


def test_every_import_points_down_the_layers_of_the_architecture():
    up = [f"{m} ({_layer(m)}) -> {t} ({_layer(t)})" for m, targets in _graph().items()
          for t in targets if _layer(t) > _layer(m)]
    assert not up, "imports pointing up:\n" + "\n".join(up)
