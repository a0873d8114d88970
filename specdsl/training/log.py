"""What a run reports: ``metrics.jsonl`` (one JSON object per epoch) and a progress bar on a terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(path: Path, epochs: int) -> None:
    """Keep the records of the first ``epochs`` epochs (a resumed run rewrites what came after its checkpoint)."""
    kept = [record for record in read_metrics(path) if record["epoch"] < epochs]
    path.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")


def progress_bar(total: int, description: str, *, enabled: bool) -> tqdm:
    """tqdm on stderr, only when it is a terminal (and ``enabled``: rank 0, not --quiet)."""
    return tqdm(
        total=total,
        desc=description,
        unit="step",
        disable=not (enabled and sys.stderr.isatty()),
        leave=False,
        dynamic_ncols=True,
    )
