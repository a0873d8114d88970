"""The CLI's tables of an analysis (report, layers) and a stage's kernel/ratio text.

They need the analysis types, so they stay with the CLI; plain formatting is `specdsl.output.text`.
"""

from __future__ import annotations

from collections.abc import Sequence

from specdsl.output.text import human, human_bytes, table
from specdsl.passes.analysis import LayerRow, Report, Row


def kernels_text(row: Row) -> str:
    """``3.5.7`` for a MixConv; the distinct kernels of a stage's blocks in order, joined by '/': ``3.5.7/3.5``."""
    return "/".join(".".join(map(str, kernels)) for kernels in row.kernels)


def ratios_text(values: Sequence[float]) -> str:
    """A stage's distinct expansion (or SE) ratios in block order: ``6``, ``6/3``."""
    return "/".join(f"{value:g}" for value in values)


def _row_cells(row: Row) -> list[object]:
    return [
        row.name,
        row.kind,
        row.blocks,
        kernels_text(row),
        row.stride,
        f"{row.in_channels}->{row.out_channels}",
        f"{row.input_size}->{row.output_size}",
        f"{row.params:,}",
        human(row.macs),
    ]


def report_table(report: Report) -> str:
    headers = ["layer", "kind", "blocks", "k", "s", "channels", "size", "params", "MACs"]
    rows = [_row_cells(report.stem), *(_row_cells(r) for r in report.stages), _row_cells(report.head)]
    rows.append(["total", "", report.blocks, "", "", "", "", f"{report.params:,}", human(report.macs)])
    body = table(headers, rows, align="llrrrrrrr")
    memory = (
        f"activations (batch {report.batch_size}, {report.dtype}): {human_bytes(report.activation_bytes)} "
        f"kept for backward, {human_bytes(report.peak_inference_bytes)} peak in inference"
    )
    return f"{report.name} @ {report.resolution}px\n{body}\n{memory}"


def layers_table(rows: Sequence[LayerRow]) -> str:
    """One line per op of the lowered network."""
    cells = [
        [
            row.name,
            row.op,
            row.detail,
            "x".join(map(str, row.shape)),
            f"{row.params:,}",
            human(row.macs) if row.macs else "",
        ]
        for row in rows
    ]
    return table(["layer", "op", "detail", "output", "params", "MACs"], cells, align="lllrrr")
