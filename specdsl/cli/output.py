"""Plain-text tables and number formatting for the CLI (no dependencies, stable for tests)."""

from __future__ import annotations

from collections.abc import Sequence

from specdsl.passes.analysis import LayerRow, Report, Row


def human(value: float, unit: str = "") -> str:
    """3 significant figures with an SI suffix: 5288548 -> '5.29M'."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.3g}{suffix}{unit}"
    return f"{value:.3g}{unit}"


def human_bytes(value: float) -> str:
    for threshold, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= threshold:
            return f"{value / threshold:.1f} {suffix}"
    return f"{value:.0f} B"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, align: str | None = None) -> str:
    """Columns padded to width; `align` is one of 'l'/'r' per column (default: text left, numbers right)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], int | float) else "l" for i in range(len(headers)))

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(row) for row in cells)])


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
