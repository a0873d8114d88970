"""What a run trains and where, checked before any framework loads: recipe overrides (``--set key=value``,
validated like the spec itself) and the run directory's contract."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from specdsl.errors import SpecError
from specdsl.frontend.format import render_document
from specdsl.ir import ModelIR
from specdsl.spec import SpecDocument, TrainingRecipe
from specdsl.training.rundir import CHECKPOINT_DIR, SPEC_FILE, TEXT_LIMIT, check_writable, damaged, read_state

__all__ = ["SPEC_FILE", "check_run_dir", "has_checkpoint", "run_spec_text", "with_recipe"]


def with_recipe(
    doc: SpecDocument, overrides: Mapping[str, Any], sources: Mapping[str, str] | None = None
) -> SpecDocument:
    """``doc`` with training keys replaced, validated like a spec (bad keys and values are diagnostics).

    ``sources`` names where each key came from (``--epochs``, ``--set lr=0.1``); a diagnostic blames the
    key's source, or, for a rule between keys (epochs and progressive_stages), every override given.
    """
    if not overrides:
        return doc
    sources = dict(sources or {})

    def blame(key: str | None) -> str:
        if key in sources:
            return sources[key]
        return ", ".join(dict.fromkeys(sources.get(name, "--set") for name in overrides))

    unknown = sorted(set(overrides) - set(TrainingRecipe.model_fields))
    if unknown:
        raise SpecError(f"unknown training key '{unknown[0]}'", path=blame(unknown[0]))
    try:
        recipe = TrainingRecipe.model_validate({**doc.training.model_dump(), **overrides})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(["training", *(str(part) for part in first["loc"])])
        key = str(first["loc"][0]) if first["loc"] else None
        raise SpecError(f"{where}: {first['msg'].removeprefix('Value error, ')}", path=blame(key)) from None
    return doc.model_copy(update={"training": recipe})


def run_spec_text(ir: ModelIR, notes: Sequence[str] = ()) -> str:
    """The resolved spec of a run: what it trained, and what ``--resume`` must be given again; ``notes`` (what a
    fine-tuned run started from) go into its header."""
    header = ["The spec this run trained (specdsl train): every key spelled out.", *notes]
    return render_document(ir.spec, header=header)


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run directory holds a completed epoch to resume from."""
    return os.path.lexists(run_dir / CHECKPOINT_DIR / "state.json")


def _saved_spec(path: Path) -> str:
    """The run's ``spec.spec``, read back: a missing, unreadable or non-UTF-8 one is a diagnostic."""
    try:
        return read_state(path, TEXT_LIMIT).decode("utf-8")
    except UnicodeDecodeError as error:
        raise damaged(path, f"not UTF-8 text (byte {error.start})") from None


def check_run_dir(run_dir: Path, spec_text: str, *, resume: bool, force: bool) -> None:
    """A fresh run needs an empty (or forced) directory; a resumed one a checkpoint and the same spec. Either
    way nothing of the user's may be in the trainer's way (`check_writable`)."""
    if os.path.lexists(run_dir) and not run_dir.is_dir():
        raise SpecError("the run directory is a file", path=str(run_dir))
    if resume:
        if not has_checkpoint(run_dir):
            raise SpecError("nothing to resume: no checkpoint in this run directory", path=str(run_dir))
        saved = run_dir / SPEC_FILE
        if _saved_spec(saved) != spec_text:
            raise SpecError(
                f"the spec or recipe differs from the run being resumed (see {saved}); resume with the same ones",
                path=str(run_dir),
            )
    elif run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise SpecError("run directory is not empty: --resume continues it, --force restarts", path=str(run_dir))
    if run_dir.is_dir():
        check_writable(run_dir)
