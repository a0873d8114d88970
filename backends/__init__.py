"""Backends translate the resolved IR (`specdsl.ir.ModelIR`) for one framework each.

Installed as ``specdsl.backends``. A backend is a module with::

    build(ir, *, weights=None, seed=0, deploy=False, **options) -> framework model
    emit(ir, out_dir, *, weights=None, seed=0, deploy=False, export=None, **options) -> list[Path]
    EXPORTS: tuple[str, ...]  # what ``export=`` accepts

Backends load lazily: importing specdsl never imports a framework, and asking
for a backend whose framework is missing names the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType


class BackendUnavailable(Exception):
    """The backend exists but its framework is not installed, or it is not written yet."""


@dataclass(frozen=True)
class _Entry:
    module: str
    requires: tuple[str, ...]  # importable top-level packages
    extra: str


_REGISTRY: dict[str, _Entry] = {
    "torch": _Entry("specdsl.backends.torch", ("torch", "safetensors"), "torch"),
    "keras": _Entry("specdsl.backends.keras", ("keras", "safetensors"), "keras"),
}
#: Backends that are planned but not implemented yet, with what is missing.
_PLANNED: dict[str, str] = {
    "onnx": "the ONNX backend is not implemented yet",
}


def names() -> list[str]:
    return sorted(_REGISTRY) + sorted(_PLANNED)


def load_backend(name: str) -> ModuleType:
    if name in _PLANNED:
        raise BackendUnavailable(f"backend '{name}': {_PLANNED[name]}; available now: {', '.join(sorted(_REGISTRY))}")
    entry = _REGISTRY.get(name)
    if entry is None:
        raise BackendUnavailable(f"unknown backend '{name}'; choose one of: {', '.join(names())}")
    missing = [pkg for pkg in entry.requires if importlib.util.find_spec(pkg) is None]
    if missing:
        raise BackendUnavailable(f"backend '{name}' needs {', '.join(missing)}: pip install 'specdsl[{entry.extra}]'")
    return importlib.import_module(entry.module)
