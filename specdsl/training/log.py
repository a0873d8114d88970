"""What a run reports: ``metrics.jsonl`` (one JSON object per epoch) and a progress bar on a terminal."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from specdsl.training.rundir import TEXT_LIMIT, damaged, read_state, write_text


def _lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Add an epoch's record: the file is rewritten whole and renamed into place, never left with a cut line."""
    write_text(path, _lines([*read_metrics(path), record]))


def read_metrics(path: Path, epochs: int | None = None) -> list[dict[str, Any]]:
    """The records (of the first ``epochs`` epochs), in order: each line a JSON object whose ``epoch`` is its
    line's index."""
    if not os.path.lexists(path):
        return []
    records = []
    try:
        text = read_state(path, TEXT_LIMIT).decode("utf-8")
    except UnicodeDecodeError as error:
        raise damaged(path, f"not UTF-8 text (byte {error.start})") from None
    for number, line in enumerate(text.splitlines()[:epochs], 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or record.get("epoch") != number - 1:
            raise damaged(Path(f"{path}:{number}"), f"not the record of epoch {number - 1}")
        records.append(record)
    return records


def truncate_metrics(path: Path, epochs: int) -> None:
    """Keep the records of the first ``epochs`` epochs (a resumed run rewrites what came after its checkpoint,
    whatever it holds)."""
    records = read_metrics(path, epochs)
    if path.exists() and read_state(path, TEXT_LIMIT) != _lines(records).encode():
        write_text(path, _lines(records))


def progress_bar(total: int, description: str, *, enabled: bool, unit: str = "step") -> tqdm:
    """tqdm on stderr, only when it is a terminal (and ``enabled``: rank 0, not --quiet)."""
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        disable=not (enabled and sys.stderr.isatty()),
        leave=False,
        dynamic_ncols=True,
    )
