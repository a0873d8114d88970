"""Scaling rules: channel/repeat rounding and the EfficientNet / EfficientNetV2 scaling laws.

The rounding functions reproduce the reference implementations' floating-point
arithmetic operation for operation, so scaled widths and depths match them
exactly (see ../shared/reference/published.md, "Rounding rules").
"""

from __future__ import annotations

import math

from specdsl.spec import ScalingSection


def round_filters(filters: float, width: float, divisor: int, round_up_90: bool) -> int:
    """Scale a channel count and round it to a multiple of `divisor`.

    ``round_up_90`` is the EfficientNet V1 rule (tensorflow/tpu, Keras V1, timm,
    torchvision): if rounding lost more than 10%, add one `divisor`. google/automl
    EfficientNetV2 and Keras V2 do not apply it.
    """
    filters = filters * width
    new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if round_up_90 and new_filters < 0.9 * filters:
        new_filters += divisor
    return int(new_filters)


def make_divisible(value: float, divisor: int = 8) -> int:
    """timm's channel rounding (with its 90% rule): `round_filters` at width 1."""
    return round_filters(value, 1.0, divisor, round_up_90=True)


def round_repeats(repeats: int, depth: float) -> int:
    """ceil(depth * repeats), as every reference computes it."""
    return math.ceil(depth * repeats)


def spread_repeats(repeats: list[int], depth: float, trunc: str) -> list[int]:
    """A stage's repeats after depth scaling, as timm's ``_scale_stage_depth`` computes them.

    The stage's total is scaled (``ceil``, or ``round`` but at least 1), then handed back to its lines
    from the last one up, each getting ``max(1, round(share))``, so the first line is the last to grow.
    With one line this is ``ceil(depth * r)`` (or ``max(1, round(depth * r))``).
    """
    total = sum(repeats)
    scaled = max(1, round(total * depth)) if trunc == "round" else round_repeats(total, depth)
    spread = []
    for count in reversed(repeats):
        share = max(1, round(count / total * scaled))
        spread.append(share)
        total, scaled = total - count, scaled - share
    return spread[::-1]


def round_resolution(pixels: float, multiple: int) -> int:
    """Nearest multiple of `multiple` (ties round up), never below one multiple."""
    return max(multiple, math.floor(pixels / multiple + 0.5) * multiple)


def compound_factors(scaling: ScalingSection, phi: float) -> tuple[float, float, float]:
    """(width, depth, resolution) growth for compound coefficient phi: beta^phi, alpha^phi, gamma^phi."""
    return scaling.beta**phi, scaling.alpha**phi, scaling.gamma**phi
