"""Synchronous successive halving: which networks train how long, and who goes on. Framework-free.

Rung i trains its networks up to ``epochs_i`` epochs of the *same* proxy schedule (the recipe with
``epochs`` = the full budget E), then ranks them; the best ``size_{i+1}`` continue from their checkpoints
in rung i+1. Budgets grow by eta (``epochs_i = E // eta^(R-1-i)``, the last rung is E) while the
networks kept shrink by 1/eta (``size_i = ceil(n / eta^i)``, never below ``top``). There are as many rungs
as it takes to get from n networks down to ``top`` finalists, and no more than E allows (the first rung
trains at least one epoch); when E cuts the rungs short, the last rung trains more than ``top``.

Because a promoted network resumes rather than restarts, one network trained to rung i has cost
``epochs_i`` epochs, and the whole search ``sum_i size_i * (epochs_i - epochs_{i-1})``, against ``n * E``
for training every network fully.

Ranking (`rank_key`, the one definition): held-out accuracy rounded to ``ACCURACY_DECIMALS`` decimals (higher
first), then held-out loss rounded to ``LOSS_DIGITS`` significant digits (lower first: on a few hundred images
accuracies tie often), then grid order. Rounding first makes the order stable: two networks whose losses differ
in the third digit (float noise, another thread count) tie and grid order decides, the same on every machine. A
score that is not a number in range (NaN or infinite accuracy or loss, an accuracy outside [0, 1]) ranks after
every valid one, by grid order, and is never the answer (`valid`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rung:
    index: int
    epochs: int  # each network of this rung has trained this many epochs when it is ranked
    size: int  # networks trained in this rung


@dataclass(frozen=True)
class Score:
    candidate: int
    accuracy: float
    loss: float


def plan(count: int, epochs: int, eta: int, top: int) -> list[Rung]:
    """The rungs for ``count`` networks, ``epochs`` for the finalists, reduction factor ``eta`` >= 2."""
    if count == 0:
        return []
    wanted = 1
    while math.ceil(count / eta ** (wanted - 1)) > top:
        wanted += 1
    possible = 1
    while eta**possible <= epochs:
        possible += 1
    rungs = min(wanted, possible)
    finalists = min(count, top)
    return [
        Rung(index, epochs // eta ** (rungs - 1 - index), max(finalists, math.ceil(count / eta**index)))
        for index in range(rungs)
    ]


def epochs_spent(rungs: list[Rung]) -> int:
    """Epochs the search trains in all: each rung adds its budget's increase for each network it keeps."""
    previous, total = 0, 0
    for rung in rungs:
        total += rung.size * (rung.epochs - previous)
        previous = rung.epochs
    return total


ACCURACY_DECIMALS = 3  # 0.1 percentage point: held-out sets of up to 1000 images keep every image's worth
LOSS_DIGITS = 2  # significant digits of the held-out loss


def valid(score: Score) -> bool:
    """A score that can win: finite accuracy in [0, 1] and finite loss."""
    return math.isfinite(score.loss) and math.isfinite(score.accuracy) and 0 <= score.accuracy <= 1


def rank_key(score: Score) -> tuple[int, float, float, int]:
    """Sort key, best first: valid scores before the rest, rounded accuracy (higher), rounded loss (lower),
    grid order."""
    if not valid(score):
        return 1, 0.0, 0.0, score.candidate
    loss = float(f"{score.loss:.{LOSS_DIGITS}g}")
    return 0, -round(score.accuracy, ACCURACY_DECIMALS), loss, score.candidate


def ranking(scores: Iterable[Score]) -> list[int]:
    """Candidates best first, by `rank_key`."""
    return [score.candidate for score in sorted(scores, key=rank_key)]
