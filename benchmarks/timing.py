"""Interleaved timing and the results table, shared by the backend benchmarks (no framework imported).

Two callables are timed alternately, the order flipped every repetition, so drift in machine load
hits both; medians are reported with the ratio of the fastest runs, since interference from other
processes only ever adds time: where the two ratios agree, the median ratio is not an artefact of load.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

#: What a repetition is timed with: the wall clock, or the process's CPU time (all its threads; with one thread,
#: the latency on an idle core, immune to other processes time-slicing this one on a shared machine).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK_NOTES = {"wall": "wall clock, `time.perf_counter`", "cpu": "process CPU time, `time.process_time`"}
#: How `timed_row` measures, for the reports.
METHOD = (
    "the two models alternating (order flipped every repetition) in one process; ratio = specdsl median / "
    "reference median; ratio of minima = fastest / fastest, a check against interference (which only adds time)"
)


@dataclass(frozen=True)
class Row:
    """One line of the results table; ``goal`` is the largest acceptable ratio, None for information only."""

    label: str
    unit: str
    reference: float
    ours: float
    goal: float | None
    min_ratio: float | None = None  # specdsl's fastest run / the reference's fastest (timings only)

    @property
    def ratio(self) -> float:
        return self.ours / self.reference

    @property
    def met(self) -> str:
        if self.goal is None:
            return "(info)"
        return "yes" if self.ratio <= self.goal else "**no**"


def timed_row(
    label: str,
    goal: float | None,
    reference: Callable[[], object],
    ours: Callable[[], object],
    warmup: int,
    reps: int,
    clock: Callable[[], float],
) -> Row:
    """Median milliseconds of each callable, alternating them (and which goes first) every repetition."""
    for _ in range(warmup):
        reference()
        ours()
    times: dict[str, list[float]] = {"reference": [], "ours": []}
    for rep in range(reps):
        order = [("reference", reference), ("ours", ours)]
        if rep % 2:
            order.reverse()
        for name, fn in order:
            start = clock()
            fn()
            times[name].append(clock() - start)
    ref, ours_ = times["reference"], times["ours"]
    return Row(label, "ms", 1e3 * statistics.median(ref), 1e3 * statistics.median(ours_), goal, min(ours_) / min(ref))


def logged(row: Row, started: float) -> Row:
    """Progress on stderr, so a long run shows where it is."""
    elapsed = time.perf_counter() - started
    print(
        f"[{elapsed:4.0f} s] {row.label}: reference {row.reference:.1f}, specdsl {row.ours:.1f} {row.unit}",
        file=sys.stderr,
    )
    return row


def table(rows: list[Row]) -> list[str]:
    """The markdown table of ``rows`` and a line counting the goals met."""
    lines = [
        "| measurement | unit | reference | specdsl | ratio | ratio of minima | goal | met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for row in rows:
        goal = f"<= {row.goal:.2f}x" if row.goal is not None else "-"
        minima = f"{row.min_ratio:.3f}x" if row.min_ratio is not None else "-"
        values = f"{row.reference:.1f} | {row.ours:.1f} | {row.ratio:.3f}x | {minima}"
        lines.append(f"| {row.label} | {row.unit} | {values} | {goal} | {row.met} |")
    goals = [row for row in rows if row.goal is not None]
    met = sum(row.ratio <= row.goal for row in goals if row.goal is not None)
    return [*lines, "", f"Goals met: {met} of {len(goals)}.", ""]
