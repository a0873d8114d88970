"""Feature taps: which op outputs a backbone returns, decided once, in the lowering.

``specdsl.lower(ir, features=..., out_indices=...)`` marks taps on the lowered network and drops every op
after the last one (the head: conv, pooling, classifier), so a backbone is a `LoweredNetwork` like any other
and every backend only reads it. Selections:

- ``"strides"``: the last output at each reduction (the stem and each block's output are the candidates), as
  timm's default ``feature_location`` and efficientnet-pytorch's ``extract_endpoints`` (B0: 16, 24, 40, 112,
  320 channels at reductions 2, 4, 8, 16, 32);
- ``"expansion"``: in the last block at each reduction, the tensor its projection conv reads (the expanded
  tensor, after depthwise and SE), as timm's ``feature_location="expansion"``; a block without a projection
  (a plain conv block) gives its output;
- a list of op names, or ``stages.N`` for the output of stage N (0-based), in any order: taps follow the
  network's forward order.

``out_indices`` then picks taps by position (negative from the end), as timm's. Each `Tap` carries its
op's name, channels, reduction (the product of strides from the input) and shape at the spec's resolution.
This module imports no framework.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from specdsl.errors import SpecError, shorten

if TYPE_CHECKING:
    from specdsl.ir import ModelIR
    from specdsl.passes.lower import LoweredNetwork

SELECTIONS = ("strides", "expansion")
#: What ``features=`` accepts, for messages.
ACCEPTED = "'strides', 'expansion' or a list of op names / 'stages.N'"

Features = str | Sequence[str] | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Tap:
    """One returned feature map: the op whose output it is, and what that output is."""

    name: str  # the op's canonical name; also the output's name in every backend
    channels: int
    reduction: int  # input size / map size: the product of the strides from the input to this op
    shape: tuple[int, ...]  # (C, H, W) per sample at the spec's evaluation resolution


def reductions(net: LoweredNetwork) -> dict[str, int]:
    """Every op's reduction: the product of the conv strides on its first-input path from the image."""
    from specdsl.passes.lower import INPUT

    out = {INPUT: 1}
    for op in net.ops:
        factor = getattr(op, "stride", 1)
        out[op.name] = out[op.inputs[0]] * factor
    return out


def _block_outputs(net: LoweredNetwork) -> dict[int, str]:
    """Global block index -> the block's output op (its last op)."""
    return {op.block: op.name for op in net.ops if op.block is not None}


def _stem_output(net: LoweredNetwork) -> list[str]:
    first_block = next((i for i, op in enumerate(net.ops) if op.block is not None), len(net.ops))
    return [net.ops[first_block - 1].name] if first_block > 0 else []


def _strides(net: LoweredNetwork, reduction: dict[str, int]) -> list[str]:
    candidates = _stem_output(net) + list(_block_outputs(net).values())
    last: dict[int, str] = {}
    for name in candidates:
        last[reduction[name]] = name
    return list(last.values())


def _expansion(net: LoweredNetwork, reduction: dict[str, int]) -> list[str]:
    outputs = _block_outputs(net)
    last: dict[int, int] = {}
    for block, name in outputs.items():
        last[reduction[name]] = block
    # a stem whose reduction no block keeps (the first block strides) is that reduction's tap, as in timm
    taps = [stem for stem in _stem_output(net) if reduction[stem] not in last]
    for block in last.values():
        ops = [op for op in net.ops if op.block == block]
        project = next((op for op in ops if ".project." in op.name), None)
        taps.append(outputs[block] if project is None else project.inputs[0])
    return taps


def _named(net: LoweredNetwork, ir: ModelIR, names: Sequence[str]) -> list[str]:
    ops = {op.name for op in net.ops}
    outputs = _block_outputs(net)
    stages: dict[str, str] = {}
    for block in ir.blocks:
        stages[f"stages.{block.stage}"] = outputs[block.global_index]
    chosen = set()
    for name in names:
        if not isinstance(name, str):
            raise SpecError(f"features: expected {ACCEPTED}, got {shorten(repr(name))}", path="features")
        op = stages.get(name, name)
        if op not in ops:
            near = difflib.get_close_matches(name, [*stages, *ops], n=3)
            hint = f"stages.0 to stages.{len(stages) - 1}" + (f"; close: {', '.join(near)}" if near else "")
            hint = f" ({hint})"
            raise SpecError(
                f"features: {shorten(repr(name))} is not an op or stage of {net.name}{hint}", path="features"
            )
        if op in chosen:
            raise SpecError(f"features: {shorten(repr(name))} is selected twice", path="features")
        chosen.add(op)
    return [op.name for op in net.ops if op.name in chosen]


def select(
    net: LoweredNetwork, ir: ModelIR, features: Features, out_indices: Sequence[int] | None = None
) -> LoweredNetwork:
    """``net`` cut after its last tap, with ``taps`` set (see the module docstring); unchanged for None."""
    if features is None:
        if out_indices is not None:
            raise SpecError("out_indices selects among feature taps: give features too", path="out_indices")
        return net
    reduction = reductions(net)
    if isinstance(features, str):
        if features == "strides":
            names = _strides(net, reduction)
        elif features == "expansion":
            names = _expansion(net, reduction)
        else:
            names = _named(net, ir, [part.strip() for part in features.split(",")])
    elif isinstance(features, Sequence) and features:
        names = _named(net, ir, list(features))
    else:
        raise SpecError(f"features: expected {ACCEPTED}, got {shorten(repr(features))}", path="features")
    if out_indices is not None:
        names = [names[i] for i in _indices(out_indices, len(names))]
    shapes = net.shapes()
    taps = tuple(
        Tap(name=name, channels=shapes[name][0], reduction=reduction[name], shape=tuple(shapes[name])) for name in names
    )
    end = max(index for index, op in enumerate(net.ops) if op.name in set(names))
    return replace(net, ops=net.ops[: end + 1], features=names[-1], output=net.ops[end].name, taps=taps)


def _indices(out_indices: Sequence[int], count: int) -> list[int]:
    bad = isinstance(out_indices, str | bytes) or not isinstance(out_indices, Sequence) or not out_indices
    if not bad:
        bad = any(isinstance(i, bool) or not isinstance(i, int) or not -count <= i < count for i in out_indices)
    if bad:
        raise SpecError(
            f"out_indices: expected distinct integers from {-count} to {count - 1} (there are {count} taps), "
            f"got {shorten(repr(out_indices))}",
            path="out_indices",
        )
    positions = sorted({i % count for i in out_indices})
    if len(positions) != len(out_indices):
        raise SpecError(f"out_indices: {shorten(repr(out_indices))} selects a tap twice", path="out_indices")
    return positions


def table(net: LoweredNetwork) -> list[dict[str, object]]:
    """The taps as rows (index, name, channels, reduction, shape): what ``specdsl info --features`` prints."""
    return [
        {"index": i, "name": t.name, "channels": t.channels, "reduction": t.reduction, "shape": list(t.shape)}
        for i, t in enumerate(net.taps)
    ]


__all__ = ["ACCEPTED", "SELECTIONS", "Features", "Tap", "reductions", "select", "table"]
