"""The public Python API: the names external code calls (re-exported by `specdsl`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from specdsl.errors import SpecError
from specdsl.frontend.loader import load_document, loads_document
from specdsl.ir import ModelIR
from specdsl.passes import rescale
from specdsl.passes.analysis import Report
from specdsl.passes.analysis import analyze as _analyze
from specdsl.passes.resolve import resolve


def load(path: str | Path, *, roots: Sequence[str | Path] = ()) -> ModelIR:
    """Parse, validate and resolve a spec file (or a shipped spec by name: ``"b0"``).

    ``extends`` may reach the spec's directory, the shipped library, the root a ``specdsl.toml``
    at or above the spec declares, and the directories in ``roots``.
    """
    return resolve(load_document(path, roots=[Path(root) for root in roots]))


def loads(
    text: str, name: str = "<string>", *, base_dir: str | Path | None = None, roots: Sequence[str | Path] = ()
) -> ModelIR:
    """Like `load`, from text; `name` is the path shown in error messages, ``extends`` is relative to
    ``base_dir`` (default: the working directory)."""
    base = None if base_dir is None else Path(base_dir)
    return resolve(loads_document(text, name, base_dir=base, roots=[Path(root) for root in roots]))


def analyze(ir: ModelIR, *, batch_size: int = 1, dtype: str = "float32", resolution: int | None = None) -> Report:
    """Parameters, MACs and activation memory, from the IR alone; ``resolution``: as if the spec said so."""
    return _analyze(at_resolution(ir, resolution), batch_size=batch_size, dtype=dtype)


def at_resolution(ir: ModelIR, resolution: int | None) -> ModelIR:
    """``ir`` re-resolved as if its spec gave this evaluation resolution (unchanged for None)."""
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
    return resolve(doc)


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
    does not have (the ONNX backend has no ``deploy``; its models are inference graphs already).
    """
    from specdsl.backends import load_backend

    ir = spec_or_ir if isinstance(spec_or_ir, ModelIR) else load(spec_or_ir)
    if deploy:
        options = {"deploy": True, **options}
    return load_backend(backend).build(ir, weights=weights, seed=seed, **options)
