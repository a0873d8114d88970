"""The search space of step 1: the (alpha, beta, gamma) grid, each point's network, and the FLOPs filter.

A grid point is the base spec with ``scaling { alpha beta gamma }`` set to the point and scaled by phi = 1,
through `specdsl.passes.rescale.by_phi`: depth x alpha, width x beta, resolution x gamma, with specdsl's
real rounding (``round_filters``, ``ceil`` of repeats, the resolution rounded to ``resolution_multiple``).
That is exactly the network ``specdsl scale best.spec --phi 1`` derives from the answer, so the searched
network and step 2's network are one computation. Its MACs come from the lowered network
(`specdsl.analyze`); a point is kept when that *measured* ratio to the base lies within
``tolerance`` (relative) of the budget. Framework-free.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from specdsl import limits
from specdsl.errors import SpecError, shorten
from specdsl.ir import ModelIR
from specdsl.passes import rescale
from specdsl.passes.analysis import analyze
from specdsl.passes.resolve import resolve
from specdsl.spec import SpecDocument

MAX_AXIS_VALUES = 1000  # per axis: a typo such as 1:2:0.0001 is an error, not a million-point grid
MAX_GRID_POINTS = 10_000  # in all: each is scaled and its MACs counted (~3 ms a small base, ~10 ms b0)


def parse_axis(text: str, flag: str) -> tuple[float, ...]:
    """``START:STOP:STEP`` (both ends included), ``V1,V2,...`` or one value ``V``, as sorted distinct values."""
    where = f"{flag} {shorten(text)}"
    try:
        parts = [float(part) for part in text.split(":")] if ":" in text else None
        listed = None if parts is not None else [float(part) for part in text.split(",")]
    except ValueError:
        raise SpecError("expected START:STOP:STEP, a comma-separated list or one number", path=where) from None
    if parts is not None:
        if len(parts) != 3:
            raise SpecError("a range is START:STOP:STEP (both ends included)", path=where)
        start, stop, step = parts
        if not all(math.isfinite(value) for value in parts):
            raise SpecError("range bounds and step must be finite numbers", path=where)
        if step <= 0:
            raise SpecError(f"step must be positive, got {step:g}", path=where)
        if start > stop:
            raise SpecError(f"start {start:g} is above stop {stop:g}", path=where)
        span = (stop - start) / step + 1e-9  # steps from start to stop (inf when the step underflows)
        if not span < MAX_AXIS_VALUES:
            shown = f"{math.floor(span) + 1}" if span < 1e15 else "over 10^15"
            raise SpecError(f"{shown} values on one axis; at most {MAX_AXIS_VALUES}", path=where)
        count = math.floor(span) + 1
        values = [round(start + index * step, 10) for index in range(count)]
    else:
        values = listed or []
        if len(values) > MAX_AXIS_VALUES:
            raise SpecError(f"{len(values)} values on one axis; at most {MAX_AXIS_VALUES}", path=where)
    for value in values:
        if not (math.isfinite(value) and 0 < value <= limits.MAX_MULTIPLIER):
            raise SpecError(f"values must lie in (0, {limits.MAX_MULTIPLIER:g}], got {value:g}", path=where)
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class GridPoint:
    """One (alpha, beta, gamma) and its scaled network (``error`` set when the spec cannot scale that far)."""

    index: int  # position in grid order (alpha, then beta, then gamma)
    alpha: float
    beta: float
    gamma: float
    ideal: float  # alpha * beta^2 * gamma^2: the FLOPs ratio before rounding
    macs: int = 0
    ratio: float = 0.0  # measured MACs / the base's
    params: int = 0
    resolution: int = 0
    network: str = ""  # digest of the architecture: points that round to the same network share it
    kept: bool = False
    error: str | None = None

    @property
    def constants(self) -> tuple[float, float, float]:
        return self.alpha, self.beta, self.gamma

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def with_constants(doc: SpecDocument, alpha: float, beta: float, gamma: float) -> SpecDocument:
    """``doc`` whose scaling block carries these constants (the network itself unchanged: phi = 0)."""
    scaling = doc.scaling.model_copy(update={"alpha": alpha, "beta": beta, "gamma": gamma})
    return rescale.validated(doc.model_copy(update={"scaling": scaling}))


def point_document(base: SpecDocument, alpha: float, beta: float, gamma: float) -> SpecDocument:
    """The grid point's network: the base with these constants, scaled by phi = 1."""
    name = f"{base.name}-a{alpha:g}-b{beta:g}-g{gamma:g}"
    return rescale.by_phi(with_constants(base, alpha, beta, gamma), 1.0, name=name)


def architecture_digest(ir: ModelIR) -> str:
    """The same for two IRs exactly when their architectures (and resolutions) are equal.

    Not `LoweredNetwork.sha256`, the network's hash in emitted files: that one covers the network's name too, and
    every grid point is named for its constants, so points that round to one network would never share it. This
    hashes `ModelIR.network` (the architecture without name or source), and results.jsonl keeps it per result."""
    text = json.dumps(ir.network(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def enumerate_grid(
    base: SpecDocument,
    alphas: tuple[float, ...],
    betas: tuple[float, ...],
    gammas: tuple[float, ...],
    *,
    budget: float,
    tolerance: float,
) -> list[GridPoint]:
    """Every point with its measured MACs ratio and whether the filter keeps it."""
    base_macs = analyze(resolve(base)).macs
    points = []
    for index, (alpha, beta, gamma) in enumerate(itertools.product(alphas, betas, gammas)):
        ideal = alpha * beta**2 * gamma**2
        try:
            ir = resolve(point_document(base, alpha, beta, gamma))
        except SpecError as error:
            points.append(GridPoint(index, alpha, beta, gamma, ideal, error=error.message))
            continue
        report = analyze(ir)
        ratio = report.macs / base_macs
        kept = abs(ratio - budget) <= tolerance * budget
        network = architecture_digest(ir)
        points.append(
            GridPoint(index, alpha, beta, gamma, ideal, report.macs, ratio, report.params, ir.resolution, network, kept)
        )
    return points


def closest_to_budget(points: list[GridPoint], budget: float) -> GridPoint:
    """Of points sharing one network, the one to report: idealised product nearest the budget, then grid order.

    Its constants are what step 2 compounds (alpha^phi...), so the one whose unrounded FLOPs growth is the
    budget keeps the family on it as phi grows.
    """
    return min(points, key=lambda point: (abs(point.ideal - budget), point.index))
