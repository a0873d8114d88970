"""What a search keeps in its output directory between runs: its configuration and the results log.

``grid.json`` pins the configuration (base spec, data, grid, budget, schedule, seed) and carries its own
digest: a rerun with the same output directory continues only if it matches, and a file whose digest does
not match its content is damaged. ``results.jsonl`` is an append log, one line per network per rung as results
come in; a shard of a cluster run appends to ``results.shard-I-of-N.jsonl`` instead, and every reader merges
all of them, so shards see each other's rungs and a rerun (sharded or not) skips whatever any of them finished.
Each record carries a digest of its fields and of the configuration that wrote it, so a changed number, a
record from another search or a foreign file is an error naming the file and line, never a different answer.
Every file is validated on read (`GridConfig`, `ResultRecord`); a damaged one is one located error saying how
to start afresh. The one exception is a last line without its newline: a write cut short by a crash, ignored
(that network is trained again) and removed by the next append. Framework-free.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specdsl.errors import SpecError, shorten
from specdsl.output.files import write_file

CONFIG_FILE = "grid.json"
RESULTS_FILE = "results.jsonl"
RESULTS_GLOB = "results*.jsonl"
RUNS_DIR = "runs"  # one trainer run directory per network: runs/n<candidate>
FORMAT = "specdsl-grid/2"
_TAIL_BYTES = 1 << 16  # longer than any record: where an append looks for a cut-short last line


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, ser_json_inf_nan="constants")


class GridConfig(_Strict):
    """``grid.json``: the settings a continued search must repeat, and their digest."""

    format: Literal["specdsl-grid/2"]
    base: str
    data: str
    alpha: list[float]
    beta: list[float]
    gamma: list[float]
    budget: float
    tolerance: float
    epochs: int
    eta: int
    top: int
    seed: int
    train_images: int | None
    digest: str


class ResultRecord(_Strict):
    """One line of a results log: a network's held-out evaluation after a rung's epoch."""

    candidate: int = Field(ge=0)
    rung: int = Field(ge=0)
    epochs: int = Field(ge=1)
    accuracy: float  # NaN or inf are possible (a diverged network): `halving.rank_key` ranks them last
    loss: float
    seconds: float = Field(ge=0)
    device: str
    macs: int = Field(ge=0)
    ratio: float
    params: int = Field(ge=0)
    resolution: int = Field(ge=1)
    network: str
    points: list[list[float]]
    shard: str
    digest: str = ""


def _digest(fields: Mapping[str, Any], key: str = "") -> str:
    text = key + json.dumps(dict(fields), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def results_file(shard: tuple[int, int]) -> str:
    index, count = shard
    return RESULTS_FILE if count == 1 else f"results.shard-{index}-of-{count}.jsonl"


def _afresh(out: Path) -> str:
    return f"to start the search afresh, remove {out} (or choose another -o)"


def _damaged(path: Path, what: str, out: Path) -> SpecError:
    return SpecError(f"damaged grid state: {what}", path=str(path), hint=_afresh(out))


def _validation(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where + ': ' if where else ''}{first['msg']}"


class GridStore:
    """A search's output directory, for one configuration: ``prepare`` it, ``append`` results, ``results``."""

    def __init__(self, out: Path, config: Mapping[str, Any]) -> None:
        self.out = out
        config = GridConfig.model_validate({"format": FORMAT, **config, "digest": ""})
        self.config = config.model_copy(update={"digest": _digest(config.model_dump(exclude={"digest"}))})

    @property
    def key(self) -> str:
        return self.config.digest

    def read_config(self) -> GridConfig | None:
        """The saved configuration, validated (None when there is none)."""
        path = self.out / CONFIG_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_bytes().decode("utf-8"))
            if isinstance(raw, dict) and "base" in raw and raw.get("format") != FORMAT:
                found = f"format {shorten(str(raw['format']))!r}" if "format" in raw else "no format"
                raise _damaged(path, f"{found}: not a search this specdsl can continue (it writes {FORMAT})", self.out)
            saved = GridConfig.model_validate(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _damaged(path, f"not JSON ({shorten(str(error), 60)})", self.out) from None
        except ValidationError as error:
            raise _damaged(path, f"not a specdsl grid configuration ({_validation(error)})", self.out) from None
        except OSError as error:
            raise SpecError(f"cannot read: {error.strerror}", path=str(path)) from None
        if saved.digest != _digest(saved.model_dump(exclude={"digest"})):
            raise _damaged(path, "its content does not match its digest (edited or corrupted)", self.out)
        return saved

    def prepare(self) -> None:
        """Start a search in ``out``, or continue the one there if its configuration is this one."""
        previous = self.read_config()
        if previous is not None:
            there, here = previous.model_dump(exclude={"digest"}), self.config.model_dump(exclude={"digest"})
            differing = [key for key in there if there[key] != here[key]]
            if differing:
                shown = ", ".join(_difference(key, there[key], here[key]) for key in differing)
                raise SpecError(
                    f"holds a grid search with another configuration ({shown}); "
                    "rerun with the same settings to continue it, or choose another -o",
                    path=str(self.out),
                )
            self.results()  # a damaged log is reported before anything trains
            return
        if self.out.exists() and not self.out.is_dir():
            raise SpecError("exists and is not a directory: choose another -o", path=str(self.out))
        try:
            entries = [entry.name for entry in self.out.iterdir()] if self.out.exists() else []
        except OSError as error:
            raise SpecError(f"cannot read: {error.strerror}", path=str(self.out)) from None
        if any(not name.startswith(".") for name in entries):
            raise SpecError(
                f"not empty and not a grid search (no {CONFIG_FILE}): choose another -o", path=str(self.out)
            )
        text = json.dumps(self.config.model_dump(), indent=2) + "\n"
        write_file(self.out / CONFIG_FILE, text, force=True)  # shards write the same bytes

    def record(self, fields: Mapping[str, Any]) -> ResultRecord:
        """``fields`` as a record of this search, with its digest."""
        record = ResultRecord.model_validate({**fields, "digest": ""})
        return record.model_copy(update={"digest": _digest(record.model_dump(exclude={"digest"}), self.key)})

    def append(self, shard: tuple[int, int], record: ResultRecord) -> None:
        """One line per result, written with one call: a reader never sees half a record but at a crash, and the
        half line a crash left is removed first."""
        path = self.out / results_file(shard)
        with path.open("ab+") as handle:
            start = max(0, handle.seek(0, os.SEEK_END) - _TAIL_BYTES)
            handle.seek(start)
            tail = handle.read()
            if tail and not tail.endswith(b"\n"):
                handle.truncate(start + tail.rfind(b"\n") + 1)
            handle.write((record.model_dump_json() + "\n").encode())

    def results(self) -> dict[tuple[int, int], ResultRecord]:
        """Every recorded result, from every results file, by (candidate, rung), each validated."""
        merged: dict[tuple[int, int], ResultRecord] = {}
        for path in sorted(self.out.glob(RESULTS_GLOB)):
            for record in self._read(path):
                if _outcome(merged.setdefault((record.candidate, record.rung), record)) != _outcome(record):
                    what = f"two different results for network n{record.candidate:03d} at rung {record.rung + 1}"
                    raise _damaged(path, what, self.out)
        return merged

    def _read(self, path: Path) -> list[ResultRecord]:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise SpecError(f"cannot read: {error.strerror}", path=str(path)) from None
        lines = data.split(b"\n")
        lines.pop()  # what follows the last newline: empty, or a line a crash cut short (trained again)
        records = []
        for number, line in enumerate(lines, 1):
            where = Path(f"{path}:{number}")
            try:
                raw = json.loads(line.decode("utf-8"))
                record = ResultRecord.model_validate(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise _damaged(where, "not a JSON record", self.out) from None
            except ValidationError as error:
                raise _damaged(where, f"not a grid result ({_validation(error)})", self.out) from None
            if record.digest != _digest(record.model_dump(exclude={"digest"}), self.key):
                raise _damaged(
                    where, "the record does not match its digest (edited, corrupted or from another search)", self.out
                )
            records.append(record)
        return records


def _outcome(record: ResultRecord) -> tuple[Any, ...]:
    """What a result says about its network (a rerun's seconds and shard may differ)."""
    return record.candidate, record.rung, record.epochs, repr(record.accuracy), repr(record.loss), record.network


def _difference(key: str, there: Any, here: Any) -> str:
    if isinstance(there, int | float | str) and isinstance(here, int | float | str) and len(f"{there}{here}") < 60:
        return f"{key} {there} there, {here} here"
    return f"{key} differs"
