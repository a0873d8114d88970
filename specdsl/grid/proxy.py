"""The proxy schedule a grid network trains with, and one unit of work: a network trained up to a rung.

The proxy recipe is the base spec's own ``training`` section with the ``--set`` overrides, ``epochs`` set to
the search's budget and no more progressive stages than epochs. Its training image sizes scale with the
network's training resolution (``image_size = 16 -> 32`` becomes ``19.2 -> 38.4`` at gamma 1.2 when the base
trains at 32 px): a point trains at the resolution it is evaluated at, or the resolution axis would
measure nothing. Framework-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from specdsl.errors import SpecError
from specdsl.frontend.format import render_document
from specdsl.spec import Range, SpecDocument
from specdsl.training.options import TrainOptions
from specdsl.training.recipe import with_recipe


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """``--set`` keys the proxy schedule decides itself are refused."""
    if "epochs" in overrides:
        raise SpecError("the proxy schedule's length is --epochs, not a training key", path="--set epochs")


def proxy_document(
    point: SpecDocument, base: SpecDocument, *, epochs: int, overrides: Mapping[str, Any]
) -> SpecDocument:
    """``point`` (a scaled network) with the search's proxy recipe."""
    check_overrides(overrides)
    doc = with_recipe(point, overrides)
    recipe = doc.training
    updates: dict[str, Any] = {"epochs": epochs, "progressive_stages": min(recipe.progressive_stages, epochs)}
    if recipe.image_size is not None:
        factor = point.input.effective_train_resolution / base.input.effective_train_resolution
        start, end = recipe.image_size.start * factor, recipe.image_size.end * factor
        updates["image_size"] = Range(start=start, end=end)
    return with_recipe(doc, updates)


def proxy_options(*, data: str, seed: int, train_images: int | None, epochs: int, eval_every: int) -> TrainOptions:
    """How a proxy run trains up to a rung's ``epochs``: quietly, without plots, alone on its rank (a torchrun job
    of grid is shards of the search, not one training), evaluating every ``eval_every`` epochs (every rung's
    budget is a multiple). The worker adds its slot's device and threads and whether the run resumes."""
    return TrainOptions(
        data=data,
        seed=seed,
        train_images=train_images,
        stop_at_epoch=epochs,
        eval_every=eval_every,
        quiet=True,
        plot=False,
        distributed=False,
    )


@dataclass(frozen=True)
class Task:
    """Train network ``candidate`` (its proxy spec, rendered) in ``run_dir`` with ``options`` until
    ``options.stop_at_epoch`` epochs are done, continuing from the run's checkpoint if it has one."""

    candidate: int
    rung: int
    spec_text: str
    run_dir: str
    options: TrainOptions

    @property
    def epochs(self) -> int:
        """The rung's budget: the epochs the network has trained when it is ranked."""
        return self.options.stop_at_epoch


def proxy_text(doc: SpecDocument) -> str:
    return render_document(doc, header=["A network of a specdsl grid search, with the search's proxy recipe."])
