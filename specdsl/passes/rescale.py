"""Deriving a new variant: a new `SpecDocument` whose multipliers and resolution are scaled.

Three ways in: a compound coefficient phi (EfficientNet, or EfficientNetV2's
non-uniform rule), explicit multipliers (how the hand-rounded B1..B8 table is
reproduced), or a MAC budget, solved for phi by bisection.
"""

from __future__ import annotations

import math

from pydantic import ValidationError

from specdsl import limits
from specdsl.errors import SpecError
from specdsl.passes.analysis import count_macs
from specdsl.passes.resolve import line_repeats, resolve_unchecked
from specdsl.passes.scaling import compound_factors, round_resolution
from specdsl.spec import SpecDocument

_PHI_SEARCH = (-limits.MAX_PHI / 4, limits.MAX_PHI / 2)


def _fail(message: str) -> SpecError:
    return SpecError(message, path="<scale>")


def _scaled_resolution(doc: SpecDocument, pixels: float) -> int:
    value = round_resolution(pixels, doc.scaling.resolution_multiple)
    if doc.scaling.max_resolution is not None:
        value = min(value, doc.scaling.max_resolution)
    if not limits.MIN_RESOLUTION <= value <= limits.MAX_RESOLUTION:
        raise _fail(f"scaled resolution {value} is outside [{limits.MIN_RESOLUTION}, {limits.MAX_RESOLUTION}]")
    return value


def _multiplier(value: float, what: str) -> float:
    if not (math.isfinite(value) and 0 < value <= limits.MAX_MULTIPLIER):
        raise _fail(f"{what} multiplier must be in (0, {limits.MAX_MULTIPLIER:g}], got {value:g}")
    return value


def apply(
    doc: SpecDocument,
    *,
    width: float = 1.0,
    depth: float = 1.0,
    resolution: int | None = None,
    train_resolution: int | None = None,
    stage_growth: list[float] | None = None,
    dropout: float | None = None,
    name: str | None = None,
) -> SpecDocument:
    """Multiply the document's width/depth multipliers; set resolutions (pixels) when given."""
    scaling = doc.scaling
    new_width = _multiplier(scaling.width * _multiplier(width, "width"), "scaled width")
    new_depth = _multiplier(scaling.depth * _multiplier(depth, "depth"), "scaled depth")
    scaling_update: dict[str, object] = {"width": new_width, "depth": new_depth}
    if stage_growth is not None:
        base = scaling.stage_depth or [1.0] * len(doc.stage_lines())
        scaling_update["stage_depth"] = [
            _multiplier(b * g, "stage depth") for b, g in zip(base, stage_growth, strict=True)
        ]
    input_update: dict[str, object] = {}
    if resolution is not None:
        input_update["resolution"] = _scaled_resolution(doc, resolution)
    if train_resolution is not None:
        input_update["train_resolution"] = _scaled_resolution(doc, train_resolution)
    head_update: dict[str, object] = {}
    if dropout is not None:
        if not 0.0 <= dropout < 1.0:
            raise _fail(f"dropout must be in [0, 1), got {dropout:g}")
        head_update["dropout"] = dropout
    updated = doc.model_copy(
        update={
            "name": name or doc.name,
            "scaling": scaling.model_copy(update=scaling_update),
            "input": doc.input.model_copy(update=input_update),
            "head": doc.head.model_copy(update=head_update),
        }
    )
    return validated(updated)


def validated(doc: SpecDocument, where: str = "<scale>") -> SpecDocument:
    """A derived document (``model_copy`` does not validate) checked as the parser would check a file."""
    try:
        return SpecDocument.model_validate(doc.model_dump())
    except ValidationError as error:
        first = error.errors()[0]
        message = f"{'.'.join(map(str, first['loc']))}: {first['msg'].removeprefix('Value error, ')}"
        raise SpecError(message, path=where) from None


def by_phi(doc: SpecDocument, phi: float, *, name: str | None = None) -> SpecDocument:
    """Compound scaling: depth alpha^phi, width beta^phi, resolution gamma^phi (V2: per-stage growth, capped)."""
    if not (math.isfinite(phi) and abs(phi) <= limits.MAX_PHI):
        raise _fail(f"phi must be a finite number with |phi| <= {limits.MAX_PHI:g}, got {phi}")
    width, depth, growth = compound_factors(doc.scaling, phi)
    train = doc.input.train_resolution
    stage_growth = None
    if doc.scaling.rule == "v2" and doc.scaling.stage_growth is not None:
        stage_growth = [g**phi for g in doc.scaling.stage_growth]
    return apply(
        doc,
        width=width,
        depth=depth,
        resolution=doc.input.resolution * growth,
        train_resolution=None if train is None else train * growth,
        stage_growth=stage_growth,
        name=name,
    )


def _macs(doc: SpecDocument) -> int:
    return count_macs(resolve_unchecked(doc))  # the kept variant is `resolve`d, memory check included


def bracket_phi(doc: SpecDocument, target_macs: float) -> tuple[float, float]:
    """Bisection on phi (MACs are a non-decreasing step function of it): phis just below and above the target."""
    if not (math.isfinite(target_macs) and target_macs > 0):
        raise _fail(f"target MACs must be a positive number, got {target_macs}")
    low, high = _PHI_SEARCH

    def macs_at(phi: float) -> float:
        try:
            return float(_macs(by_phi(doc, phi)))
        except SpecError:
            return math.inf  # beyond a limit: treat as too big

    if macs_at(high) < target_macs:
        raise _fail(f"target of {target_macs:.4g} MACs is beyond what the limits allow for this spec")
    if macs_at(low) > target_macs:
        raise _fail(f"target of {target_macs:.4g} MACs is below the smallest network this spec scales to")
    for _ in range(48):
        middle = (low + high) / 2
        if macs_at(middle) < target_macs:
            low = middle
        else:
            high = middle
    return low, high


def fit_macs(doc: SpecDocument, target_macs: float, *, name: str | None = None) -> SpecDocument:
    """The compound-scaled variant closest to a MAC budget.

    Depth and width move in whole blocks and multiples of 8 channels, and
    feature maps in whole pixels, so MACs jump as phi grows (often by more
    than 10%). So phis near the bisection's answer are each tried with
    resolutions up to ~12% either side of their own, and the closest wins.
    """
    candidates = []
    phi, _ = bracket_phi(doc, target_macs)
    for offset in range(-6, 7):
        try:
            scaled = by_phi(doc, phi + 0.05 * offset, name=name)
        except SpecError:
            continue
        step = scaled.scaling.resolution_multiple
        around = scaled.input.resolution
        for pixels in range(max(step, around - around // 8), around + around // 8 + 1, step):
            try:
                candidate = apply(scaled, resolution=pixels) if pixels != around else scaled
                candidates.append((abs(_macs(candidate) - target_macs), candidate))
            except SpecError:
                continue  # outside the limits
    return min(candidates, key=lambda pair: pair[0])[1]


def _shorter(value: float) -> list[float]:
    """Decimals of 1, 2, ... significant digits near ``value``, shortest first, up to ``value`` itself."""
    out = []
    for digits in range(1, 18):
        candidate = float(f"{value:.{digits}g}")
        if candidate == value:
            break
        out.append(candidate)
    return out


def shortest(doc: SpecDocument) -> SpecDocument:
    """``doc`` with each scaling multiplier (``width``, ``depth``, every ``stage_depth``) written as the shortest
    decimal that resolves to the same network: phi = 3 gives width 1.331, not 1.1**3 = 1.3310000000000004."""
    network = resolve_unchecked(doc).network()
    repeats = line_repeats(doc)

    def same(candidate: SpecDocument, key: str) -> bool:  # the same network: the same size, so no memory check
        try:
            if key == "width":
                return resolve_unchecked(candidate).network() == network
            return line_repeats(candidate) == repeats  # depth multipliers decide the repeats and nothing else
        except SpecError:
            return False

    for key in ("width", "depth"):
        for value in _shorter(getattr(doc.scaling, key)):
            candidate = doc.model_copy(update={"scaling": doc.scaling.model_copy(update={key: value})})
            if same(candidate, key):
                doc = candidate
                break
    for index, entry in enumerate(doc.scaling.stage_depth or []):
        for value in _shorter(entry):
            stage_depth = list(doc.scaling.stage_depth or [])
            stage_depth[index] = value
            candidate = doc.model_copy(update={"scaling": doc.scaling.model_copy(update={"stage_depth": stage_depth})})
            if same(candidate, "stage_depth"):
                doc = candidate
                break
    return validated(doc)
