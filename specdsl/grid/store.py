"""What a search keeps in its output directory between runs: its configuration and the results log.

``grid.json`` pins the configuration (base spec, data, grid, budget, schedule, seed): a rerun with the same
output directory continues only if it matches. ``results.jsonl`` is an append log, one line per network
per rung as results come in; a shard of a cluster run appends to ``results.shard-I-of-N.jsonl`` instead, and
every reader merges all of them, so shards see each other's rungs and a rerun (sharded or not) skips
whatever any of them finished. Framework-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specdsl.cli.files import write_file
from specdsl.errors import SpecError

CONFIG_FILE = "grid.json"
RESULTS_FILE = "results.jsonl"
RUNS_DIR = "runs"  # one trainer run directory per network: runs/n<candidate>


def results_file(shard: tuple[int, int]) -> str:
    index, count = shard
    return RESULTS_FILE if count == 1 else f"results.shard-{index}-of-{count}.jsonl"


def prepare(out: Path, config: Mapping[str, Any]) -> None:
    """Start a search in ``out``, or continue the one there if its configuration is ``config``."""
    saved = out / CONFIG_FILE
    if saved.exists():
        previous = json.loads(saved.read_text(encoding="utf-8"))
        differing = [key for key in sorted(set(previous) | set(config)) if previous.get(key) != config.get(key)]
        if differing:
            shown = ", ".join(_difference(key, previous.get(key), config.get(key)) for key in differing)
            raise SpecError(
                f"holds a grid search with another configuration ({shown}); "
                "rerun with the same settings to continue it, or choose another -o",
                path=str(out),
            )
        return
    if out.exists() and any(not entry.name.startswith(".") for entry in out.iterdir()):
        raise SpecError(f"not empty and not a grid search (no {CONFIG_FILE}): choose another -o", path=str(out))
    write_file(saved, json.dumps(dict(config), indent=2) + "\n", force=True)  # shards write the same bytes


def _difference(key: str, there: Any, here: Any) -> str:
    if isinstance(there, int | float | str) and isinstance(here, int | float | str) and len(f"{there}{here}") < 60:
        return f"{key} {there} there, {here} here"
    return f"{key} differs"


def append(path: Path, record: Mapping[str, Any]) -> None:
    """One line per result, written with one call: a reader never sees half a record but at a crash."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(dict(record)) + "\n")


def read_results(out: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """Every recorded result, from every results file, by (candidate, rung). A line cut short by a crash is
    skipped (that network is trained again)."""
    merged: dict[tuple[int, int], dict[str, Any]] = {}
    for path in sorted(out.glob("results*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            merged.setdefault((record["candidate"], record["rung"]), record)
    return merged
