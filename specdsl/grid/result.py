"""What a grid search is given and what it returns: its settings, the candidate networks and the result.

Values only, so that the report (`specdsl.grid.report`) can read a result without importing the search that
makes it (`specdsl.grid.search` imports both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from specdsl.errors import SpecError
from specdsl.frontend.format import render_document
from specdsl.grid import halving
from specdsl.grid.proxy import check_overrides
from specdsl.grid.space import MAX_GRID_POINTS, GridPoint
from specdsl.grid.store import ResultRecord
from specdsl.spec import SpecDocument
from specdsl.training.options import SEED_LIMIT, check_whole
from specdsl.training.recipe import with_recipe

MAX_EPOCHS = 100_000  # as a recipe's epochs (also the bound of --eta and --top)


@dataclass(frozen=True)
class GridSettings:
    """What is searched and how each network trains (everything a rerun must repeat to continue)."""

    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    gammas: tuple[float, ...]
    data: str = "builtin:digits"
    budget: float = 2.0
    tolerance: float = 0.1  # relative: keep |ratio - budget| <= tolerance * budget
    epochs: int = 9  # proxy epochs of the finalists (the last rung)
    eta: int = 3
    top: int = 3
    seed: int = 0
    recipe: Mapping[str, Any] = field(default_factory=dict)  # training keys overriding the base's
    train_images: int | None = None  # train on a fixed random subset of the training images

    def check(self) -> None:
        """Every setting in range, named by its flag; the grid's size before anything enumerates it."""
        for flag, value in (("--budget", self.budget), ("--tolerance", self.tolerance)):
            if not (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)):
                raise SpecError(f"expected a finite number, got {value!r}", path=flag)
        if self.budget <= 0:
            raise SpecError(f"must be positive, got {self.budget:g}", path=f"--budget {self.budget:g}")
        if self.tolerance < 0:
            raise SpecError(f"must be >= 0, got {self.tolerance:g}", path=f"--tolerance {self.tolerance:g}")
        for flag, value, low, high in (
            ("--epochs", self.epochs, 1, MAX_EPOCHS),
            ("--eta", self.eta, 2, MAX_EPOCHS),
            ("--top", self.top, 1, MAX_EPOCHS),
            ("--seed", self.seed, 0, SEED_LIMIT - 1),
            ("--train-images", self.train_images, 1, 10**9),
        ):
            check_whole(value, flag, low, high, optional=flag == "--train-images")
        check_overrides(self.recipe)
        if not isinstance(self.data, str) or not self.data:
            raise SpecError(f"expected builtin:digits or a directory, got {self.data!r}", path="--data")
        axes = (("--alpha", self.alphas), ("--beta", self.betas), ("--gamma", self.gammas))
        for flag, values in axes:
            if not values or not all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in values):
                raise SpecError("expected one or more positive finite numbers", path=flag)
        count = math.prod(len(values) for _, values in axes)
        if count > MAX_GRID_POINTS:
            sizes = " x ".join(f"{len(values)} {flag[2:]}" for flag, values in axes)
            raise SpecError(
                f"the grid has {count:,} points ({sizes}); at most {MAX_GRID_POINTS:,}",
                path="--alpha/--beta/--gamma",
                hint="use coarser steps: each point is scaled and its MACs counted before anything trains",
            )

    def config(self, base: SpecDocument) -> dict[str, Any]:
        """The ``grid.json`` a continued search must match."""
        return {
            "base": render_document(with_recipe(base, self.recipe)),
            "data": self.data,
            "alpha": list(self.alphas),
            "beta": list(self.betas),
            "gamma": list(self.gammas),
            "budget": self.budget,
            "tolerance": self.tolerance,
            "epochs": self.epochs,
            "eta": self.eta,
            "top": self.top,
            "seed": self.seed,
            "train_images": self.train_images,
        }


@dataclass(frozen=True)
class Candidate:
    """One network to train: the kept grid points that round to it."""

    index: int
    points: tuple[GridPoint, ...]
    spec_text: str  # the network with the proxy recipe

    @property
    def name(self) -> str:
        return f"n{self.index:03d}"

    @property
    def first(self) -> GridPoint:
        return self.points[0]


@dataclass(frozen=True)
class GridResult:
    settings: GridSettings
    base: SpecDocument
    points: list[GridPoint]
    candidates: list[Candidate]
    rungs: list[halving.Rung]
    results: dict[tuple[int, int], ResultRecord]  # (candidate, rung) -> record
    ranking: list[int]  # candidates, best first: furthest rung, then its score
    chosen: GridPoint  # the winner's point reported as the answer

    @property
    def best(self) -> Candidate:
        return self.candidates[self.ranking[0]]

    @property
    def epochs_spent(self) -> int:
        return halving.epochs_spent(self.rungs)

    @property
    def epochs_full(self) -> int:
        return len(self.candidates) * self.settings.epochs
