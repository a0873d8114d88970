"""The constraint filter against a brute-force recount: every point of a small grid on b0 scaled by hand and its
MACs counted by PyTorch's FlopCounterMode over the real forward pass (on the meta device: shapes only)."""

from __future__ import annotations

import itertools
import math

import pytest

import specdsl
from specdsl.grid.space import enumerate_grid
from specdsl.passes.resolve import resolve
from specdsl.spec import SpecDocument

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

ALPHAS, BETAS, GAMMAS = (1.0, 1.2, 1.4), (1.0, 1.1), (1.0, 1.15, 1.3)
BUDGET, TOLERANCE = 2.0, 0.1


def brute_force_macs(base: SpecDocument, alpha: float, beta: float, gamma: float) -> int:
    """Depth x alpha, width x beta on the spec's multipliers, resolution x gamma to the nearest multiple (ties up),
    written into the document directly (not through `specdsl.passes.rescale`), counted on the torch module."""
    multiple = base.scaling.resolution_multiple
    resolution = multiple * math.floor(gamma * base.input.resolution / multiple + 0.5)
    scaling = base.scaling.model_copy(update={"width": base.scaling.width * beta, "depth": base.scaling.depth * alpha})
    doc = base.model_copy(
        update={"scaling": scaling, "input": base.input.model_copy(update={"resolution": resolution})}
    )
    model = specdsl.build(resolve(doc), device="meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 3, resolution, resolution, device="meta"))
    return counter.get_total_flops() // 2  # FLOPs count a multiply-add as two


def test_the_filter_keeps_exactly_the_points_whose_recounted_macs_meet_the_budget() -> None:
    base = specdsl.load("b0").spec
    points = enumerate_grid(base, ALPHAS, BETAS, GAMMAS, budget=BUDGET, tolerance=TOLERANCE)
    assert [p.constants for p in points] == list(itertools.product(ALPHAS, BETAS, GAMMAS))
    base_macs = brute_force_macs(base, 1.0, 1.0, 1.0)
    assert base_macs == points[0].macs == 385_814_752  # B0: the published 0.39B FLOPs
    decisions = []
    for point in points:
        macs = brute_force_macs(base, *point.constants)
        assert point.macs == macs, point
        assert point.ratio == macs / base_macs
        kept = abs(macs / base_macs - BUDGET) <= TOLERANCE * BUDGET
        assert point.kept == kept, point
        decisions.append((point.constants, kept, abs(point.ideal - BUDGET) <= TOLERANCE * BUDGET))
    assert 0 < sum(kept for _, kept, _ in decisions) < len(points)
    # The idealised product alone would decide differently for some points: rounding moves the measured ratio.
    disagree = {constants for constants, kept, ideal in decisions if kept != ideal}
    assert {(1.0, 1.0, 1.3), (1.2, 1.0, 1.15), (1.4, 1.1, 1.0), (1.2, 1.1, 1.15)} <= disagree
