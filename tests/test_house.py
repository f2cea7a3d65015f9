"""The house (issue 36): no import circles, every package installed, one place per name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the installed package name of each source folder (pyproject's package-dir)
SOURCES = {"dcbench": ROOT / "dcbench", "dcbench.tasks": ROOT / "tasks"}


def modules() -> dict[str, Path]:
    out = {}
    for prefix, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((prefix, *parts))] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every internal module `name` imports, at module level, in functions or under
    TYPE_CHECKING alike (a circle made through a function-level import is still a circle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            # `from pkg import mod` depends on mod; `from mod import name` on mod (a package's
            # __init__ runs before any of its modules, which is no circle of theirs)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            target = target.replace("tasks.", "dcbench.tasks.", 1) if target.startswith(
                "tasks.") else target
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_circle_finder_finds_a_circle_through_a_function_level_import(tmp_path) -> None:
    """The check below would pass vacuously if function-level imports were missed."""
    (tmp_path / "a.py").write_text("import dcbench.b\n")
    (tmp_path / "b.py").write_text("def f():\n    from dcbench import a\n")
    known = {"dcbench.a": tmp_path / "a.py", "dcbench.b": tmp_path / "b.py"}
    graph = {n: imports_of(n, p, known) for n, p in known.items()}
    assert circles(graph) == [["dcbench.a", "dcbench.b"]]


def test_no_import_circle_in_the_package() -> None:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert circles(graph) == []


def test_every_package_folder_is_installed() -> None:
    """A sub-package missing from pyproject's list imports in an editable checkout and fails
    in a wheel install."""
    block = re.search(r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(),
                      re.S | re.M)
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))     # tomllib: Python 3.11+
    folders = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert folders - listed == set()


def test_the_supervised_config_holds_no_deepcluster_key_and_resumes_an_older_run() -> None:
    """Its log showed k 100 and clustering kmeans (issue 36); a run folder saved with them
    still resumes."""
    from dcbench.methods.config import DEEPCLUSTER_ONLY, differences, resolve

    sup = resolve({"method": "supervised", "data": "fashion-mnist", "out": "x"})
    dc = resolve({"method": "deepcluster", "data": "fashion-mnist", "out": "x"})
    assert set(dc) - set(sup) == set(DEEPCLUSTER_ONLY)
    older = {**sup, **{k: dc[k] for k in DEEPCLUSTER_ONLY}}
    assert differences(older, sup) == []
    assert differences({**older, "lr": 0.01}, sup) == ["lr"]


def test_each_method_refuses_the_options_it_does_not_read() -> None:
    import pytest

    from dcbench.errors import DcbenchError
    from dcbench.methods.catalog import METHODS, check_options

    assert check_options({"method": "deepcluster", "k": 50}).name == "deepcluster"
    for method, key in (("supervised", "k"), ("supervised", "sampler"), ("jule", "pca_dim")):
        with pytest.raises(DcbenchError, match=rf"^--{key.replace('_', '-')} is not an option "
                                               rf"of {method} "):
            check_options({"method": method, key: 3})
    assert "k" in METHODS["deepcluster"].options and "k" not in METHODS["supervised"].options


def test_docs_names_lists_every_name_once_and_is_current() -> None:
    """docs/NAMES.md is what the registries say now (regenerate it with `python -m
    dcbench.names > docs/NAMES.md`), and no name is defined in two places."""
    from dcbench.names import markdown, rows

    assert (ROOT / "docs" / "NAMES.md").read_text() == markdown()
    kinds = [(kind, name) for kind, name, _ in rows()]
    assert len(kinds) == len(set(kinds))
    assert ("task", "voc-det") in kinds and ("dataset", "fmnist-voc") in kinds
    assert ("arch", "alexnet-small") in kinds and ("method", "supervised") in kinds
