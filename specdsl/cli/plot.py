"""A per-stage bar chart of parameters and MACs as a self-contained SVG (no plotting library needed)."""

from __future__ import annotations

from html import escape

from specdsl.output.text import human
from specdsl.passes.analysis import Report

_ROW, _LABEL, _BAR, _GAP = 22, 90, 300, 70
_COLOURS = {"params": "#4c72b0", "MACs": "#dd8452"}


def report_svg(report: Report) -> str:
    rows = [report.stem, *report.stages, report.head]
    width = _LABEL + 2 * (_BAR + _GAP) + 20
    height = 60 + _ROW * len(rows)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(report.name)} @ {report.resolution}px: '
        f"{report.params:,} params, {human(report.macs)} MACs</text>",
    ]
    for column, (metric, values) in enumerate(
        (("params", [row.params for row in rows]), ("MACs", [row.macs for row in rows]))
    ):
        left = _LABEL + column * (_BAR + _GAP)
        largest = max(values) or 1
        out.append(f'<text x="{left}" y="45" font-weight="bold">{metric} per stage</text>')
        for index, (row, value) in enumerate(zip(rows, values, strict=True)):
            top = 55 + index * _ROW
            length = max(1.0, _BAR * value / largest)
            out.append(
                f'<rect x="{left}" y="{top}" width="{length:.1f}" height="{_ROW - 6}" fill="{_COLOURS[metric]}">'
                f"<title>{escape(row.name)}: {value:,}</title></rect>"
            )
            out.append(f'<text x="{left + length + 4:.1f}" y="{top + 12}">{human(value)}</text>')
    for index, row in enumerate(rows):
        out.append(f'<text x="10" y="{55 + index * _ROW + 12}">{escape(row.name)} ({row.blocks})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
