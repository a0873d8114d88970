"""Pictures of a network, drawn with matplotlib (the ``plot`` extra): `specdsl plot`.

* `architecture_figure`: a block-level diagram, top to bottom: the input, the stem, one box per
  stage (kind, kernel, expansion, SE, repeats, channels, feature-map size), the head and the
  classifier output. Box widths are to scale by MACs or params (``analyze(ir)`` figures).
* `scaling_figure`: params and MACs against phi for the spec's scaling rule, with the shipped
  variants of the same rule marked where their MACs fall on the curve and labelled.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot, no global state, no GUI) and
returned with a dict of what was drawn, so tests can check the content, not only the pixels.
"""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specdsl import api, limits
from specdsl.cli.output import kernels_text, ratios_text
from specdsl.errors import SpecError
from specdsl.frontend.loader import library_specs
from specdsl.ir import ModelIR
from specdsl.output.text import human
from specdsl.passes.analysis import Report, Row
from specdsl.vocabulary import BlockKind

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
KIND_NAMES = {BlockKind.MBCONV: "MBConv", BlockKind.FUSED: "Fused-MBConv", BlockKind.CONV: "Conv"}
COLOURS = {"stem": "#8c8c8c", "head": "#8c8c8c", "mbconv": "#4c72b0", "fused": "#dd8452", "conv": "#55a868"}
_NO_DATES = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}


def image_format(path: str) -> str:
    """The format a file name asks for (svg, png, pdf)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SpecError("name a .svg, .png or .pdf file: the format follows the extension", path=f"-o {path}")
    return FORMATS[suffix]


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SpecError("drawing needs matplotlib: pip install 'specdsl[plot]'") from None
    return Figure


def render(figure: Figure, image_format: str) -> bytes:
    """The figure as file content (no timestamps in svg and pdf, so equal inputs give equal files)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, metadata=_NO_DATES[image_format], bbox_inches="tight")
    return buffer.getvalue()


def stage_text(row: Row, kind: BlockKind) -> str:
    """``MBConv k3 e6 SE0.25 ×2``, as the analysis reads the IR: every distinct kernel list, expansion and SE ratio
    of the stage's blocks (``MBConv k3.5.7/3.5.7.9 e6/3 SE0.5 ×3`` for a MixNet stage)."""
    parts = [KIND_NAMES[kind], f"k{kernels_text(row)}"]
    if row.expansions:
        parts.append(f"e{ratios_text(row.expansions)}")
    if row.se_ratios:
        parts.append(f"SE{ratios_text(row.se_ratios)}")
    parts.append(f"×{row.blocks}")
    return " ".join(parts)


def _shape_text(row: Row) -> str:
    return f"{row.in_channels}→{row.out_channels} ch · {row.input_size}→{row.output_size} px · s{row.stride}"


def architecture_figure(ir: ModelIR, report: Report, *, by: str = "macs") -> tuple[Figure, dict[str, Any]]:
    """The block-level diagram; box widths proportional to each row's MACs (``by="macs"``) or params."""
    figure_class = _figure_class()
    rows: list[tuple[str, str, Row, str]] = [("stem", f"Conv k{ir.stem.kernel}", report.stem, "stem")]
    for stage, row in zip(ir.stages, report.stages, strict=True):
        kind = stage.blocks[0].kind
        rows.append((f"stage {stage.index}", stage_text(row, kind), row, kind.value))
    head_conv = f"Conv 1x1 → {ir.head.conv_channels} · " if ir.head.conv_channels else ""
    rows.append(("head", f"{head_conv}pool · dropout {ir.head.dropout:g} · FC", report.head, "head"))
    values = [getattr(row, by) for _, _, row, _ in rows]
    total, largest = sum(values) or 1, max(values) or 1
    unit = "MACs" if by == "macs" else "params"

    height = 1.1 + 0.62 * (len(rows) + 2)
    figure = figure_class(figsize=(11, height))
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, 12)
    ax.set_ylim(-(len(rows) + 1.6), 1.4)
    ax.axis("off")
    centre, half = 7.0, 2.4
    ax.text(0.1, 1.0, f"{ir.name} @ {ir.resolution}px: {report.params:,} params, {human(report.macs)} MACs",
            fontsize=12, fontweight="bold", va="center")  # fmt: skip
    ax.text(0.1, 0.45, f"box width ∝ {unit}; {report.blocks} blocks in {len(ir.stages)} stages",
            fontsize=9, color="#555555", va="center")  # fmt: skip
    ax.text(centre, 0, f"input {ir.in_channels}×{ir.resolution}×{ir.resolution}", ha="center", va="center",
            fontsize=9)  # fmt: skip
    previous_bottom = -0.2
    for index, ((label, kind_text, row, colour_key), value) in enumerate(zip(rows, values, strict=True)):
        y = -(index + 1)
        width = max(2 * half * value / largest, 0.04)
        box = ax.add_patch(
            _rectangle((centre - width / 2, y - 0.3), width, 0.6, facecolor=COLOURS[colour_key], edgecolor="#333333")
        )
        box.set_gid(label)
        ax.annotate("", xy=(centre, y + 0.3), xytext=(centre, previous_bottom),
                    arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 0.8})  # fmt: skip
        previous_bottom = y - 0.3
        ax.text(0.1, y + 0.12, f"{label}  {kind_text}", fontsize=9, fontweight="bold", va="center")
        ax.text(0.1, y - 0.18, _shape_text(row), fontsize=8, color="#333333", va="center")
        ax.text(centre + half + 0.15, y, f"{human(value)} {unit} ({100 * value / total:.0f}%)", fontsize=8,
                va="center")  # fmt: skip
    out_y = -(len(rows) + 1)
    ax.annotate("", xy=(centre, out_y + 0.2), xytext=(centre, previous_bottom),
                arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 0.8})  # fmt: skip
    ax.text(centre, out_y, f"{ir.head.classes} classes", ha="center", va="center", fontsize=9)
    drawn = {
        "figure": "architecture",
        "by": by,
        "stages": len(ir.stages),
        "rows": [label for label, *_ in rows],
        "labels": [text for _, text, *_ in rows],
    }
    return figure, drawn


def _rectangle(xy: tuple[float, float], width: float, height: float, **style: Any) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, **style)


def family(ir: ModelIR) -> dict[str, ModelIR]:
    """The shipped variants published as scalings of the same base: under the compound rule, those with the
    same stage lines (b0..b8 and l2; v2_b0..v2_b3); under the v2 rule, all of them (v2_s, v2_m, v2_l, v2_xl)."""
    loaded = {name: api.load(path) for name, path in library_specs().items()}
    rule = ir.spec.scaling.rule
    return {
        name: other
        for name, other in loaded.items()
        if other.spec.scaling.rule == rule and (rule == "v2" or other.spec.stages == ir.spec.stages)
    }


def _curve(ir: ModelIR, up_to_macs: float) -> list[tuple[float, int, int]]:
    """(phi, params, MACs) from phi = -1 in steps of 0.25 until the MACs pass ``up_to_macs`` (or a limit)."""
    points = []
    phi = -1.0
    while phi <= limits.MAX_PHI / 2:
        try:
            report = api.analyze(api.scale(ir, phi=phi))
        except SpecError:  # beyond a limit (at either end)
            if points:
                break
        else:
            points.append((phi, report.params, report.macs))
            if report.macs > up_to_macs:
                break
        phi += 0.25
    return points


def _phi_at(macs: float, curve: list[tuple[float, int, int]]) -> float | None:
    """The phi whose MACs on the curve equal ``macs`` (log-linear between the points), None outside it."""
    for (phi_a, _, macs_a), (phi_b, _, macs_b) in itertools.pairwise(curve):
        if macs_a <= macs <= macs_b:
            if macs_b == macs_a:
                return phi_a
            return phi_a + (phi_b - phi_a) * math.log(macs / macs_a) / math.log(macs_b / macs_a)
    return None


def scaling_figure(ir: ModelIR, variants: dict[str, ModelIR]) -> tuple[Figure, dict[str, Any]]:
    """Params and MACs against phi (left), params against MACs (right), published variants marked on both."""
    figure_class = _figure_class()
    reports = {name: api.analyze(other) for name, other in variants.items()}
    top = max([api.analyze(ir).macs, *(report.macs for report in reports.values())])
    curve = _curve(ir, 1.15 * top)
    phis = [phi for phi, _, _ in curve]
    params = [p for _, p, _ in curve]
    macs = [m for _, _, m in curve]

    figure = figure_class(figsize=(13, 5.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    rule = ir.spec.scaling
    law = f"α={rule.alpha:g}, β={rule.beta:g}, γ={rule.gamma:g}" + (", per-stage growth" if rule.rule == "v2" else "")
    figure.suptitle(f"{ir.name}: {rule.rule} scaling ({law})", fontweight="bold")
    left.plot(phis, macs, color=COLOURS["mbconv"], label="MACs")
    left.set_yscale("log")
    left.set_xlabel("φ (compound coefficient)")
    left.set_ylabel("MACs", color=COLOURS["mbconv"])
    twin = left.twinx()
    twin.plot(phis, params, color=COLOURS["fused"], label="params")
    twin.set_yscale("log")
    twin.set_ylabel("params", color=COLOURS["fused"])
    left.grid(True, which="major", alpha=0.3)
    right.plot(macs, params, color="#333333", label=f"{ir.name} scaled by φ")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("MACs")
    right.set_ylabel("params")
    right.grid(True, which="major", alpha=0.3)

    marked: dict[str, float | None] = {}
    for name, report in sorted(reports.items(), key=lambda item: item[1].macs):
        phi = _phi_at(report.macs, curve)
        marked[name] = None if phi is None else round(phi, 3)
        label = "shipped variants" if len(marked) == 1 else None
        right.plot([report.macs], [report.params], "o", color="#c44e52", gid=f"variant {name}", label=label)
        right.annotate(name, (report.macs, report.params), textcoords="offset points", xytext=(5, -10), fontsize=8)
        if phi is not None:
            left.plot([phi], [report.macs], "o", color=COLOURS["mbconv"], gid=f"variant {name}")
            twin.plot([phi], [report.params], "s", color=COLOURS["fused"], markersize=4)
            left.annotate(name, (phi, report.macs), textcoords="offset points", xytext=(-4, 6), fontsize=8)
    right.legend(loc="upper left", fontsize=8)
    left.legend(handles=[*left.get_lines()[:1], *twin.get_lines()[:1]], loc="upper left", fontsize=8)
    drawn = {"figure": "scaling", "rule": rule.rule, "phi": [phis[0], phis[-1]], "variants": marked}
    return figure, drawn
