"""Recipe overrides (``specdsl train --set key=value``), validated like the spec itself; no framework."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from specdsl.errors import SpecError
from specdsl.spec import SpecDocument, TrainingRecipe


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
        where = ".".join(str(part) for part in first["loc"]) or "training"
        raise SpecError(f"training.{where}: {first['msg']}", path="--set") from None
    return doc.model_copy(update={"training": recipe})
