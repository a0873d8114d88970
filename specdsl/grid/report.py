"""A search's final outputs, published together through the atomic writer (`specdsl.output.files`).

* ``table.md``: every kept grid point (alpha, beta, gamma, idealised alpha*beta^2*gamma^2, measured MACs ratio,
  params, held-out accuracy per rung, training seconds), best network first;
* ``accuracy_vs_macs.png``: held-out accuracy against MACs, one colour per rung, the chosen point marked;
* ``best.spec``: the *base* network, complete and standalone, whose ``scaling`` block carries the found
  alpha, beta, gamma (phi = 0: the multipliers are not applied). ``specdsl scale best.spec --phi 1`` derives
  the network the search trained and ``--phi N`` the rest of the family (step 2), as ``specs/b0.spec``
  carries EfficientNet's 1.2, 1.1, 1.15. A spec with the multipliers applied would compound them again;
* ``summary.json``: all of it as data (also what ``--json`` prints).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from specdsl.frontend.format import render_document
from specdsl.frontend.loader import loads_document
from specdsl.grid import store
from specdsl.grid.result import GridResult
from specdsl.grid.space import GridPoint, with_constants
from specdsl.output.files import staged_output
from specdsl.output.text import human
from specdsl.passes.resolve import resolve

FILES = ("table.md", "accuracy_vs_macs.png", "best.spec", "summary.json")


def best_spec(result: GridResult, header: list[str] | None = None) -> str:
    """The base network carrying the chosen constants; checked to re-parse to the base network."""
    chosen = result.chosen
    doc = with_constants(result.base, *chosen.constants)
    text = render_document(doc, header=header)
    if resolve(loads_document(text, "best.spec")).network() != resolve(result.base).network():
        raise RuntimeError("best.spec does not re-parse to the base network")  # a bug, not bad input
    return text


def rows(result: GridResult) -> list[dict[str, Any]]:
    """One row per kept grid point, best network first (grid order within a network)."""
    rank_of = {candidate: rank for rank, candidate in enumerate(result.ranking)}
    by_point = {point.index: candidate for candidate in result.candidates for point in candidate.points}
    ordered = sorted(by_point, key=lambda index: (rank_of[by_point[index].index], index))
    table = []
    for index in ordered:
        candidate = by_point[index]
        point: GridPoint = result.points[index]
        records = [result.results.get((candidate.index, rung.index)) for rung in result.rungs]
        table.append(
            {
                "rank": rank_of[candidate.index] + 1,
                "network": candidate.name,
                **{key: getattr(point, key) for key in ("alpha", "beta", "gamma", "ideal", "ratio", "macs", "params")},
                "resolution": point.resolution,
                "accuracy": [None if r is None else r.accuracy for r in records],
                "seconds": sum(r.seconds for r in records if r is not None),
                "chosen": point.index == result.chosen.index,
            }
        )
    return table


def summary(result: GridResult, out: Path) -> dict[str, Any]:
    chosen, best = result.chosen, result.best
    settings = result.settings
    last = max(rung.index for rung in result.rungs if (best.index, rung.index) in result.results)
    return {
        "base": result.base.name,
        "data": settings.data,
        "budget": settings.budget,
        "tolerance": settings.tolerance,
        "grid": {"alpha": list(settings.alphas), "beta": list(settings.betas), "gamma": list(settings.gammas)},
        "points": len(result.points),
        "kept": sum(point.kept for point in result.points),
        "networks": len(result.candidates),
        "rungs": [{"epochs": rung.epochs, "networks": rung.size} for rung in result.rungs],
        "epochs_spent": result.epochs_spent,
        "epochs_full_grid": result.epochs_full,
        "best": {
            "alpha": chosen.alpha,
            "beta": chosen.beta,
            "gamma": chosen.gamma,
            "ideal": chosen.ideal,
            "ratio": chosen.ratio,
            "macs": chosen.macs,
            "params": chosen.params,
            "resolution": chosen.resolution,
            "network": best.name,
            "accuracy": result.results[(best.index, last)].accuracy,
            "epochs": result.rungs[last].epochs,
            "weights": str(out / store.RUNS_DIR / best.name / "best.safetensors"),  # the phi = 1 network's
        },
        "table": rows(result),
        "grid_points": [point.to_json() for point in result.points],
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def table_cells(result: GridResult) -> tuple[list[str], list[list[str]]]:
    headers = ["rank", "net", "α", "β", "γ", "αβ²γ²", "MACs ratio", "MACs", "params", "res"]
    headers += [f"acc% @{rung.epochs}ep" for rung in result.rungs] + ["train s"]
    cells = []
    for row in rows(result):
        mark = "*" if row["chosen"] else ""
        cells.append(
            [f"{row['rank']}{mark}", row["network"], f"{row['alpha']:g}", f"{row['beta']:g}", f"{row['gamma']:g}",
             f"{row['ideal']:.3f}", f"{row['ratio']:.3f}", human(row["macs"]), f"{row['params']:,}",
             str(row["resolution"]), *(_percent(value) for value in row["accuracy"]), f"{row['seconds']:.1f}"]
        )  # fmt: skip
    return headers, cells


def markdown(result: GridResult) -> str:
    settings = result.settings
    data = summary(result, Path("."))
    best = data["best"]
    headers, cells = table_cells(result)
    lines = [
        f"# specdsl grid: {result.base.name} on {settings.data}",
        "",
        f"- budget: measured MACs ratio within {100 * settings.tolerance:g}% of {settings.budget:g} at phi = 1",
        f"- grid: {len(settings.alphas)} α x {len(settings.betas)} β x {len(settings.gammas)} γ = "
        f"{data['points']} points; {data['kept']} within the budget, {data['networks']} distinct networks",
        "- successive halving (eta = {}): {}".format(
            settings.eta, ", ".join(f"{r['networks']} networks to epoch {r['epochs']}" for r in data["rungs"])
        ),
        f"- epochs trained: **{data['epochs_spent']}**, against {data['epochs_full_grid']} for every network's full "
        f"{settings.epochs}-epoch proxy ({data['epochs_full_grid'] - data['epochs_spent']} fewer)",
        f"- best: **α = {best['alpha']:g}, β = {best['beta']:g}, γ = {best['gamma']:g}** (network {best['network']}, "
        f"MACs ratio {best['ratio']:.3f}, αβ²γ² = {best['ideal']:.3f}), held-out accuracy "
        f"{100 * best['accuracy']:.2f}% after {best['epochs']} epochs",
        "",
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---:" if i != 1 else "---" for i in range(len(headers))) + " |",
        *("| " + " | ".join(row) + " |" for row in cells),
        "",
        "`*`: the chosen point. Points that round to the same network share its training (same `net`). "
        "`-`: pruned before that rung.",
        "",
        *_outside(result),
    ]
    return "\n".join(lines)


def _outside(result: GridResult) -> list[str]:
    """The points the filter left out, with what it measured (or why the spec cannot scale there)."""
    rejected = [point for point in result.points if not point.kept]
    if not rejected:
        return []
    lines = [
        f"<details><summary>{len(rejected)} grid points outside the budget</summary>",
        "",
        "| α | β | γ | αβ²γ² | MACs ratio | params | res |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in rejected:
        measured = f"{p.ratio:.3f} | {p.params:,} | {p.resolution}" if p.error is None else f"{p.error} | - | -"
        lines.append(f"| {p.alpha:g} | {p.beta:g} | {p.gamma:g} | {p.ideal:.3f} | {measured} |")
    return [*lines, "", "</details>", ""]


def plot(result: GridResult) -> bytes:
    """PNG of held-out accuracy against MACs per rung, the chosen point starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    base_macs = result.chosen.macs / result.chosen.ratio
    low, high = (result.settings.budget * (1 + s * result.settings.tolerance) * base_macs for s in (-1, 1))
    axes.axvspan(low / 1e6, high / 1e6, color="0.92", label="budget window")
    for rung in result.rungs:
        found = [c for c in result.candidates if (c.index, rung.index) in result.results]
        macs = [c.first.macs / 1e6 for c in found]
        accuracy = [100 * result.results[(c.index, rung.index)].accuracy for c in found]
        label = f"rung {rung.index + 1}: {rung.epochs} epoch(s)"
        axes.scatter(macs, accuracy, label=label, s=18 + 14 * rung.index, alpha=0.8)
    best = result.best
    last = max(rung.index for rung in result.rungs if (best.index, rung.index) in result.results)
    chosen = result.chosen
    axes.scatter([chosen.macs / 1e6], [100 * result.results[(best.index, last)].accuracy], marker="*", s=260,
                 color="crimson", edgecolor="k", zorder=5,
                 label=f"chosen: α {chosen.alpha:g}, β {chosen.beta:g}, γ {chosen.gamma:g}")  # fmt: skip
    axes.set(xlabel="MACs (millions)", ylabel="held-out accuracy (%)",
             title=f"specdsl grid: {result.base.name} on {result.settings.data}")  # fmt: skip
    ratio = axes.secondary_xaxis("top", functions=(lambda m: m * 1e6 / base_macs, lambda r: r * base_macs / 1e6))
    ratio.set_xlabel("MACs ratio to the base")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def write(result: GridResult, out: Path, *, merge_log: bool = False) -> list[Path]:
    """Write the outputs into ``out``, all or none (replacing a previous report of the same search). A sharded
    search (``merge_log``) also gets ``results.jsonl``: every shard's results in one log."""
    chosen = result.chosen
    settings = result.settings
    header = [
        f"specdsl grid on {settings.data}: α = {chosen.alpha:g}, β = {chosen.beta:g}, γ = {chosen.gamma:g} "
        f"(measured MACs ratio {chosen.ratio:.3f} at phi = 1, budget {settings.budget:g}).",
        "The base network with the found constants (phi = 0). `specdsl scale best.spec --phi 1` is the network",
        "the search trained; --phi N scales the family.",
    ]
    contents = {
        "table.md": markdown(result),
        "accuracy_vs_macs.png": plot(result),
        "best.spec": best_spec(result, header),
        "summary.json": json.dumps(summary(result, out), indent=2) + "\n",
    }
    if merge_log:
        records = sorted(result.results.values(), key=lambda record: (record.rung, record.candidate))
        contents[store.RESULTS_FILE] = "".join(record.model_dump_json() + "\n" for record in records)
    with staged_output(out, force=True) as staging:
        for name, content in contents.items():
            path = staging.path / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
    return staging.published
