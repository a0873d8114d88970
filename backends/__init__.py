"""Backends translate the resolved IR (`specdsl.ir.ModelIR`) for one framework each.

Installed as ``specdsl.backends``. A backend is a module with::

    build(ir, *, weights=None, seed=0, **options) -> framework model
    emit(ir, out_dir, *, weights=None, seed=0, **options) -> list[Path]
    EXPORTS: tuple[str, ...]  # optional: what ``export=`` accepts

Backends load lazily: importing specdsl never imports a framework, and asking
for a backend whose framework is missing names the extra to install.

Options are keyword arguments of ``build`` and ``emit``. The one rule for all backends: an option a
backend does not have is refused, never silently ignored (Python raises TypeError; the CLI checks
with `unsupported_options` first and passes only the options the user gave).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType


class BackendUnavailable(Exception):
    """The backend is unknown, or its framework is not installed."""


@dataclass(frozen=True)
class _Entry:
    module: str
    requires: tuple[str, ...]  # importable top-level packages
    extra: str


_REGISTRY: dict[str, _Entry] = {
    "torch": _Entry("specdsl.backends.torch", ("torch", "safetensors", "numpy"), "torch"),
    "keras": _Entry("specdsl.backends.keras", ("keras", "safetensors", "numpy"), "keras"),
    "onnx": _Entry("specdsl.backends.onnx", ("onnx", "onnx_ir", "onnxruntime", "safetensors", "numpy"), "onnx"),
}


def names() -> list[str]:
    return sorted(_REGISTRY)


def load_backend(name: str) -> ModuleType:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise BackendUnavailable(f"unknown backend '{name}'; choose one of: {', '.join(names())}")
    missing = [pkg for pkg in entry.requires if importlib.util.find_spec(pkg) is None]
    if missing:
        raise BackendUnavailable(f"backend '{name}' needs {', '.join(missing)}: pip install 'specdsl[{entry.extra}]'")
    return importlib.import_module(entry.module)


def unsupported_options(backend: ModuleType, options: Iterable[str]) -> list[str]:
    """The names in ``options`` that ``backend.emit`` does not take (an ``emit`` with ``**options`` passes
    them to ``backend.build``, whose keyword arguments count then)."""
    accepted: set[str] = set()
    for function in (backend.emit, backend.build):
        parameters = inspect.signature(function).parameters.values()
        accepted |= {p.name for p in parameters if p.kind == inspect.Parameter.KEYWORD_ONLY}
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return [name for name in options if name not in accepted]
