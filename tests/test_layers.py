"""Layers that only point down: every import of every module checked against the table in docs/architecture.md.

The table ("## Layers") is the one source of truth: this test reads it, so the page and the code cannot drift.
Every import counts, lazy ones inside functions and ``if TYPE_CHECKING:`` blocks included (the AST sees them).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT

#: The trees whose modules the table places (``specdsl.backends.*`` is ``backends/*``, mapped by the package).
PACKAGES = ("specdsl", "backends", "grammar")
#: The package-dir mapping in pyproject.toml: an import of the installed name is the checkout's module.
MAPPED = {"specdsl.backends": "backends", "specdsl.grammar": "grammar"}


@dataclass(frozen=True)
class Arrow:
    """One import: ``module`` imports ``target`` (a module of the tree or a framework) at ``file:line``."""

    module: str
    target: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.module} -> {self.target} ({self.file}:{self.line})"


@dataclass
class Layers:
    """The table: layer names bottom to top, the modules each holds, what each may import, the exceptions."""

    order: list[str] = field(default_factory=list)
    modules: dict[str, str] = field(default_factory=dict)  # module prefix -> layer
    allowed: dict[str, set[str]] = field(default_factory=dict)  # layer -> layers it may import (its own included)
    frameworks_allowed: dict[str, bool] = field(default_factory=dict)
    frameworks: set[str] = field(default_factory=set)
    exceptions: dict[str, set[str]] = field(default_factory=dict)  # module -> modules/frameworks it may also import

    def layer_of(self, module: str) -> str | None:
        """The layer of the longest listed prefix; a package's root entry (no dot) names only its ``__init__``."""
        parts = module.split(".")
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in self.modules and ("." in prefix or prefix == module):
                return self.modules[prefix]
        return None


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _rows(lines: list[str], header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with ``header``."""
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def read_layers(doc: str) -> Layers:
    """Parse the "## Layers" section of an architecture page."""
    section = doc.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    layers = Layers()
    for name, modules, may_import, frameworks in _rows(lines, "| layer | modules | may import | frameworks |"):
        below = set(layers.order)
        if may_import == "all below":
            allowed = below
        else:
            allowed = {word.strip() for word in may_import.split(",")} - {"—", ""}
            assert allowed <= below, f"layer {name} may import {sorted(allowed - below)}, not below it"
        layers.order.append(name)
        layers.allowed[name] = allowed | {name}
        layers.frameworks_allowed[name] = frameworks == "any"
        for module in _names(modules):
            layers.modules[module] = name
    for module, extra, _why in _rows(lines, "| module | may also import | why |"):
        (name,) = _names(module)
        layers.exceptions.setdefault(name, set()).update(_names(extra))
    framework_line = next(line for line in lines if line.startswith("Frameworks:"))
    layers.frameworks = set(_names(framework_line))
    return layers


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _normalised(module: str) -> str:
    for installed, checkout in MAPPED.items():
        if module == installed or module.startswith(installed + "."):
            return checkout + module[len(installed) :]
    return module


def imports(root: Path) -> list[Arrow]:
    """Every import in every module under ``root``'s packages: of the tree (normalised) and of anything else."""
    files = sorted(path for package in PACKAGES for path in (root / package).rglob("*.py"))
    known = {_normalised(_module_name(path, root)) for path in files}
    arrows = []
    for path in files:
        module = _normalised(_module_name(path, root))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        shown = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(), shown)):
            if isinstance(node, ast.Import):
                targets = [_normalised(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                base = _normalised(base)
                # `from specdsl import weights` imports the module specdsl.weights; `from x import name`, x itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            arrows.extend(Arrow(module, target, shown, node.lineno) for target in dict.fromkeys(targets))
    return arrows


def _excepted(arrow: Arrow, layers: Layers) -> bool:
    return any(arrow.target == e or arrow.target.startswith(e + ".") for e in layers.exceptions.get(arrow.module, ()))


def violations(arrows: list[Arrow], layers: Layers) -> list[str]:
    """Every arrow the table does not allow, and every module it does not place."""
    found = []
    for arrow in arrows:
        layer = layers.layer_of(arrow.module)
        if layer is None:
            found.append(f"{arrow.module} is in no layer of the table ({arrow.file})")
            continue
        if _excepted(arrow, layers):
            continue
        top = arrow.target.split(".")[0]
        if top in PACKAGES:
            target_layer = layers.layer_of(arrow.target)
            if target_layer is None or target_layer not in layers.allowed[layer]:
                found.append(f"{arrow} [{layer} -> {target_layer}]")
        elif top in layers.frameworks and not layers.frameworks_allowed[layer]:
            found.append(f"{arrow} [{layer} imports a framework]")
    return sorted(set(found))


def layer_cycles(arrows: list[Arrow], layers: Layers) -> list[list[str]]:
    """The layers that reach each other through the arrows: each group a cycle. A named exception is left out (the
    package's lazy names reach every layer from core by design)."""
    graph: dict[str, set[str]] = {name: set() for name in layers.order}
    for arrow in arrows:
        source, target = layers.layer_of(arrow.module), layers.layer_of(arrow.target)
        if source and target and source != target and not _excepted(arrow, layers):
            graph[source].add(target)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reachable = {name: reach(name) for name in graph}
    groups = {frozenset(n for n in graph if n in reachable[name] and name in reachable[n]) for name in graph}
    return sorted(sorted(group) for group in groups if group)


def check(root: Path, doc: Path) -> list[str]:
    layers = read_layers(doc.read_text())
    arrows = imports(root)
    cycles = [f"layers in a cycle: {' <-> '.join(group)}" for group in layer_cycles(arrows, layers)]
    return violations(arrows, layers) + cycles


def test_every_import_points_down_the_layer_table() -> None:
    problems = check(ROOT, ROOT / "docs" / "architecture.md")
    assert not problems, "imports the layer table in docs/architecture.md does not allow:\n" + "\n".join(problems)


_TINY_DOC = """# Architecture

## Layers

| layer | modules | may import | frameworks |
| --- | --- | --- | --- |
| low | `specdsl`, `specdsl.low` | — | none |
| high | `specdsl.high`, `backends` | all below | any |

| module | may also import | why |
| --- | --- | --- |

Frameworks: `torch`.

## Next
"""


def _tiny_tree(root: Path, low_body: str) -> Path:
    for package in ("specdsl", "backends", "grammar"):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
    (root / "specdsl" / "low.py").write_text(low_body)
    (root / "specdsl" / "high.py").write_text("from specdsl import low\nimport torch\n")
    (root / "grammar" / "__init__.py").unlink()
    doc = root / "architecture.md"
    doc.write_text(_TINY_DOC)
    return doc


def test_the_check_reports_an_upward_import_and_passes_without_it(tmp_path: Path) -> None:
    upward = "import os\n\n\ndef late():\n    from specdsl import high  # lazy: still an arrow\n"
    doc = _tiny_tree(tmp_path, upward)
    assert check(tmp_path, doc) == [
        "specdsl.low -> specdsl.high (specdsl/low.py:5) [low -> high]",
        "layers in a cycle: high <-> low",
    ]
    (tmp_path / "specdsl" / "low.py").write_text("import os\n")
    assert check(tmp_path, doc) == []


def test_the_check_reports_frameworks_below_the_backends_and_unplaced_modules(tmp_path: Path) -> None:
    doc = _tiny_tree(tmp_path, "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import torch.nn\n")
    (tmp_path / "backends" / "stray.py").write_text("from . import other\n")
    assert check(tmp_path, doc) == [
        "backends.stray is in no layer of the table (backends/stray.py)",
        "specdsl.low -> torch.nn (specdsl/low.py:4) [low imports a framework]",
    ]
