"""The public Python API: the names external code calls (re-exported by `specdsl`)."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from specdsl import limits
from specdsl.errors import SpecError, shorten
from specdsl.frontend.loader import load_document, loads_document
from specdsl.ir import ModelIR
from specdsl.passes import rescale
from specdsl.passes.analysis import DTYPE_BYTES, Backbone, Report, backbone
from specdsl.passes.analysis import analyze as _analyze
from specdsl.passes.features import Features
from specdsl.passes.lower import lower
from specdsl.passes.resolve import resolve

# Arguments are checked like the CLI's flags: a wrong type or value is a SpecError naming the function and the
# argument (`specdsl.analyze: error: batch_size must be ...`), never a silent truncation or a wrong answer.


def _bad(function: str, argument: str, expected: str, value: object) -> SpecError:
    return SpecError(f"{argument} must be {expected}, got {shorten(repr(value))}", path=f"specdsl.{function}")


def _integer(function: str, argument: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise _bad(function, argument, f"an integer from {low} to {high}", value)
    return int(value)


def _real(function: str, argument: str, value: object, low: float, high: float, *, open_at: str = "") -> float:
    """A finite real number in [low, high]; ``open_at``: "low" and/or "high" for an open end."""
    fits = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if fits:
        number = float(value)  # type: ignore[arg-type]
        fits = (low < number if "low" in open_at else low <= number) and (
            number < high if "high" in open_at else number <= high
        )
    if not fits:
        interval = f"{'(' if 'low' in open_at else '['}{low:g}, {high:g}{')' if 'high' in open_at else ']'}"
        raise _bad(function, argument, f"a finite number in {interval}", value)
    return number


def _path(function: str, argument: str, value: object) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise _bad(function, argument, "a path (str or os.PathLike)", value)
    return Path(value)


def _roots(function: str, roots: object) -> list[Path]:
    if isinstance(roots, str | bytes | os.PathLike) or not isinstance(roots, Sequence):
        raise _bad(function, "roots", "a sequence of directories (a list, even of one)", roots)
    return [_path(function, "roots", root) for root in roots]


def _ir(function: str, argument: str, value: object) -> ModelIR:
    if not isinstance(value, ModelIR):
        raise _bad(function, argument, "a ModelIR (from specdsl.load or specdsl.loads)", value)
    return value


def _resolution(function: str, argument: str, value: object) -> int | None:
    return None if value is None else _integer(function, argument, value, limits.MIN_RESOLUTION, limits.MAX_RESOLUTION)


def load(path: str | Path, *, roots: Sequence[str | Path] = ()) -> ModelIR:
    """Parse, validate and resolve a spec file (or a shipped spec by name: ``"b0"``).

    ``extends`` may reach the spec's directory, the shipped library, the root a ``specdsl.toml``
    at or above the spec declares, and the directories in ``roots``.
    """
    if not isinstance(path, str):
        path = _path("load", "path", path)
    elif not path:
        raise _bad("load", "path", "a spec file or a shipped spec's name", path)
    return resolve(load_document(path, roots=_roots("load", roots)))


def loads(
    text: str, name: str = "<string>", *, base_dir: str | Path | None = None, roots: Sequence[str | Path] = ()
) -> ModelIR:
    """Like `load`, from text; `name` is the path shown in error messages, ``extends`` is relative to
    ``base_dir`` (default: the working directory)."""
    if not isinstance(text, str):
        raise _bad("loads", "text", "spec text (str)", text)
    if not isinstance(name, str):
        raise _bad("loads", "name", "a str", name)
    base = None if base_dir is None else _path("loads", "base_dir", base_dir)
    return resolve(loads_document(text, name, base_dir=base, roots=_roots("loads", roots)))


@overload
def analyze(
    ir: ModelIR, *, batch_size: int = ..., dtype: str = ..., resolution: int | None = ..., features: None = ...
) -> Report: ...


@overload
def analyze(
    ir: ModelIR,
    *,
    batch_size: int = ...,
    dtype: str = ...,
    resolution: int | None = ...,
    features: str | Sequence[str],
    out_indices: Sequence[int] | None = ...,
) -> Backbone: ...


def analyze(
    ir: ModelIR,
    *,
    batch_size: int = 1,
    dtype: str = "float32",
    resolution: int | None = None,
    features: Features = None,
    out_indices: Sequence[int] | None = None,
) -> Report | Backbone:
    """Parameters, MACs and activation memory, from the IR alone; ``resolution``: as if the spec said so.

    ``features`` / ``out_indices`` select a backbone as `build` does (same options, same errors): the answer is then
    the backbone's params and MACs per sample, without the head (docs/features.md)."""
    _ir("analyze", "ir", ir)
    batch_size = _integer("analyze", "batch_size", batch_size, 1, limits.MAX_BATCH)
    if dtype not in DTYPE_BYTES:
        raise _bad("analyze", "dtype", f"one of {', '.join(DTYPE_BYTES)}", dtype)
    _resolution("analyze", "resolution", resolution)
    ir = at_resolution(ir, resolution)
    if features is not None or out_indices is not None:
        return backbone(lower(ir, features=features, out_indices=out_indices))
    return _analyze(ir, batch_size=batch_size, dtype=dtype)


def at_resolution(ir: ModelIR, resolution: int | None) -> ModelIR:
    """``ir`` re-resolved as if its spec gave this evaluation resolution (unchanged for None)."""
    _ir("at_resolution", "ir", ir)
    resolution = _resolution("at_resolution", "resolution", resolution)
    if resolution is None or resolution == ir.resolution:
        return ir
    spec = ir.spec
    moved = spec.model_copy(update={"input": spec.input.model_copy(update={"resolution": resolution})})
    return resolve(rescale.validated(moved, "<resolution>"))


def scale(
    ir: ModelIR,
    phi: float | None = None,
    width: float | None = None,
    depth: float | None = None,
    resolution: int | None = None,
    target_macs: float | None = None,
    *,
    train_resolution: int | None = None,
    dropout: float | None = None,
    name: str | None = None,
) -> ModelIR:
    """Derive a scaled variant. Give exactly one of: `phi`; explicit `width`/`depth`/`resolution`; `target_macs`.

    `width` and `depth` multiply the spec's current multipliers; `resolution`
    and `train_resolution` are pixels. `dropout` and `name` set the new
    variant's head dropout and name (default: ``<name>-scaled``; published variants tabulate dropout).
    """
    _ir("scale", "ir", ir)
    if phi is not None:
        phi = _real("scale", "phi", phi, -limits.MAX_PHI, limits.MAX_PHI)
    for argument, value in (("width", width), ("depth", depth)):
        if value is not None:
            _real("scale", argument, value, 0.0, limits.MAX_MULTIPLIER, open_at="low")
    resolution = _resolution("scale", "resolution", resolution)
    train_resolution = _resolution("scale", "train_resolution", train_resolution)
    if target_macs is not None:
        target_macs = _real("scale", "target_macs", target_macs, 0.0, math.inf, open_at="low high")
    if dropout is not None:
        dropout = _real("scale", "dropout", dropout, 0.0, 1.0, open_at="high")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise _bad("scale", "name", "a non-empty str", name)
    explicit = any(value is not None for value in (width, depth, resolution))
    modes = (phi is not None) + explicit + (target_macs is not None)
    if modes != 1:
        raise SpecError(
            "scale: give exactly one of phi, explicit width/depth/resolution, or target_macs", path="<scale>"
        )
    doc = ir.spec
    name = name or f"{ir.name}-scaled"
    if target_macs is not None:
        doc = rescale.fit_macs(doc, target_macs, name=name)
        doc = rescale.apply(doc, train_resolution=train_resolution, dropout=dropout)
    elif phi is not None:
        doc = rescale.by_phi(doc, phi, name=name)
        doc = rescale.apply(doc, train_resolution=train_resolution, dropout=dropout)
    else:
        doc = rescale.apply(
            doc,
            width=1.0 if width is None else width,
            depth=1.0 if depth is None else depth,
            resolution=resolution,
            train_resolution=train_resolution,
            dropout=dropout,
            name=name,
        )
    return resolve(rescale.shortest(doc))


def build(
    spec_or_ir: ModelIR | str | Path,
    backend: str = "torch",
    weights: str | Path | Mapping[str, Any] | None = None,
    seed: int = 0,
    deploy: bool = False,
    **options: Any,
) -> Any:
    """Build a framework model. `weights`: a safetensors path or a name -> tensor mapping.

    `deploy` and `options` go to the backend's ``build`` only when set: a backend refuses an option it
    does not have with `specdsl.backends.UnsupportedOption` (a TypeError), as ``specdsl build`` refuses its flag
    (the ONNX backend has no ``deploy``; its models are inference graphs already).
    """
    from specdsl.backends import load_backend

    if not isinstance(backend, str):
        raise _bad("build", "backend", "a backend's name (torch, keras, onnx)", backend)
    seed = _integer("build", "seed", seed, 0, 2**63 - 1)
    if not isinstance(deploy, bool):
        raise _bad("build", "deploy", "True or False", deploy)
    if weights is not None and not isinstance(weights, Mapping):
        weights = _path("build", "weights", weights)
    ir = spec_or_ir if isinstance(spec_or_ir, ModelIR) else load(spec_or_ir)
    if deploy:
        options = {"deploy": True, **options}
    return load_backend(backend).build(ir, weights=weights, seed=seed, **options)


def train(spec: str | Path | ModelIR, run_dir: str | Path, options: Any = None, **fields: Any) -> Any:
    """``specdsl train`` as a function: `specdsl.training.train` with its ``TrainOptions`` given whole or as
    keywords (``specdsl.train("b0", "runs/b0", data="photos/", init="b0.safetensors", freeze="stages.3")``)."""
    from dataclasses import replace

    from specdsl.training import TrainOptions
    from specdsl.training import train as run

    unknown = sorted(set(fields) - set(TrainOptions.__dataclass_fields__))
    if unknown:
        raise _bad("train", unknown[0], "a TrainOptions field", fields[unknown[0]])
    return run(spec, run_dir, replace(options or TrainOptions(), **fields))
