"""What a run trains and where, checked before any framework loads: recipe overrides (``--set key=value``,
validated like the spec itself) and the run directory's contract."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from specdsl.errors import SpecError
from specdsl.frontend.format import render_document
from specdsl.ir import ModelIR
from specdsl.spec import SpecDocument, TrainingRecipe

SPEC_FILE = "spec.spec"  # the resolved spec a run trained, every key spelled out


def with_recipe(doc: SpecDocument, overrides: Mapping[str, Any]) -> SpecDocument:
    """``doc`` with training keys replaced, validated like a spec (bad keys and values are diagnostics)."""
    if not overrides:
        return doc
    unknown = sorted(set(overrides) - set(TrainingRecipe.model_fields))
    if unknown:
        raise SpecError(f"unknown training key '{unknown[0]}'", path="--set")
    try:
        recipe = TrainingRecipe.model_validate({**doc.training.model_dump(), **overrides})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(["training", *(str(part) for part in first["loc"])])
        raise SpecError(f"{where}: {first['msg'].removeprefix('Value error, ')}", path="--set") from None
    return doc.model_copy(update={"training": recipe})


def run_spec_text(ir: ModelIR) -> str:
    """The resolved spec of a run: what it trained, and what ``--resume`` must be given again."""
    return render_document(ir.spec, header=["The spec this run trained (specdsl train): every key spelled out."])


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run directory holds a completed epoch to resume from."""
    return (run_dir / "checkpoint" / "state.json").exists()


def check_run_dir(run_dir: Path, spec_text: str, *, resume: bool, force: bool) -> None:
    """A fresh run needs an empty (or forced) directory; a resumed one a checkpoint and the same spec."""
    if resume:
        if not has_checkpoint(run_dir):
            raise SpecError("nothing to resume: no checkpoint in this run directory", path=str(run_dir))
        saved = run_dir / SPEC_FILE
        if saved.read_text(encoding="utf-8") != spec_text:
            raise SpecError(
                f"the spec or recipe differs from the run being resumed (see {saved}); resume with the same ones",
                path=str(run_dir),
            )
    elif run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise SpecError("run directory is not empty: --resume continues it, --force restarts", path=str(run_dir))
