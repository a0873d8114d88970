"""``--features`` and ``--out-indices`` of ``specdsl build`` and ``specdsl info``: a backbone's taps on the command
line (docs/features.md). The selection is checked against the spec before anything is written; the lowering
decides the taps (`specdsl.passes.features`)."""

from __future__ import annotations

import argparse
from typing import Any

from specdsl.backends import OPTIONS
from specdsl.cli.build_flags import add_option
from specdsl.errors import SpecError, shorten
from specdsl.ir import ModelIR
from specdsl.passes import analysis
from specdsl.passes import features as taps
from specdsl.passes.lower import lower_for_build


def add_arguments(parser: argparse.ArgumentParser | Any, *, indices: bool) -> None:
    """``--features`` (and ``--out-indices``) as the backends' contract declares them."""
    add_option(parser, OPTIONS["features"])
    if indices:
        add_option(parser, OPTIONS["out_indices"])


def out_indices(text: str | None) -> list[int] | None:
    """``--out-indices 1,2,-1`` as integers; anything else is one error naming the flag."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise SpecError(
            "expected comma-separated integers such as 1,2,3", path=f"--out-indices {shorten(text)}"
        ) from None


def options(args: argparse.Namespace) -> dict[str, object]:
    """The backend options the flags give (none without ``--features``)."""
    indices = out_indices(getattr(args, "out_indices", None))
    if args.features is None and indices is not None:
        raise SpecError("selects among feature taps: give --features too", path=f"--out-indices {args.out_indices}")
    if args.features is None:
        return {}
    return {"features": args.features, **({"out_indices": indices} if indices is not None else {})}


def check(ir: ModelIR, args: argparse.Namespace, chosen: dict[str, object]) -> None:
    """Refuse a selection the spec does not have, or a combination the build cannot honour, before any work."""
    if not chosen and ir.spec.outputs.features is None:
        return
    if getattr(args, "quantize", None) is not None:
        raise SpecError("quantized backbones are not built yet: leave out --quantize", path="--features")
    backbone(ir, chosen)


def declared(ir: ModelIR) -> None:
    """Check the spec's ``outputs`` section against its network (a located error), for ``specdsl check``."""
    if ir.spec.outputs.features is not None:
        lower_for_build(ir)


def backbone(ir: ModelIR, chosen: dict[str, object]) -> dict[str, Any]:
    """The backbone of ``ir`` for the flags' selection (none: the spec's ``outputs``): its params, MACs and tap
    table (``info --features``'s JSON); a bad selection is blamed on the flag."""
    try:
        net = lower_for_build(ir, **chosen)  # type: ignore[arg-type]
    except SpecError as error:
        if not chosen:  # the spec's outputs section: located there already
            raise
        flag = "--out-indices" if error.path == "out_indices" else "--features"
        raise SpecError(error.message.split(": ", 1)[-1], path=flag, hint=error.hint) from None
    return {**analysis.backbone(net).model_dump(), "taps": taps.table(net)}


def tap_table(data: dict[str, Any]) -> str:
    from specdsl.output.text import human, table

    cells = [
        (row["index"], row["name"], row["channels"], row["reduction"], "x".join(map(str, row["shape"])))
        for row in data["taps"]
    ]
    lines = table(["index", "tap", "channels", "reduction", "shape (C x H x W)"], cells, align="rlrrr")
    return f"{lines}\nbackbone (no head): {data['params']:,} params, {human(data['macs'])} MACs"
