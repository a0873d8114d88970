"""The search's framework-free parts: axis flags, the constraint filter's bookkeeping, the successive-halving
plan and ranking, the proxy recipe, and the output directory's contract."""

from __future__ import annotations

from pathlib import Path

import pytest

import specdsl
from specdsl.cli.grid import parse_shard
from specdsl.errors import SpecError
from specdsl.grid import halving, store
from specdsl.grid.proxy import proxy_document
from specdsl.grid.search import GridSettings, candidates_of
from specdsl.grid.space import closest_to_budget, enumerate_grid, parse_axis, point_document
from tests.conftest import one_error_line, run_main

from .conftest import GRID_SPEC


@pytest.fixture
def base() -> specdsl.SpecDocument:
    return specdsl.loads(GRID_SPEC, "grid_test.spec").spec


def test_a_range_includes_both_ends_without_float_drift() -> None:
    values = parse_axis("1.0:2.0:0.1", "--alpha")
    assert values == (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0)
    assert parse_axis("1:1.5:0.25", "--gamma") == (1.0, 1.25, 1.5)
    assert parse_axis("1:1.6:0.25", "--gamma") == (1.0, 1.25, 1.5)  # the stop is a bound, not a value
    assert parse_axis("1.2,1,1.2", "--beta") == (1.0, 1.2)  # lists: sorted, distinct
    assert parse_axis("1.15", "--gamma") == (1.15,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2:1:0.1", "start 2 is above stop 1"),
        ("1:2:0", "step must be positive, got 0"),
        ("1:2", "a range is START:STOP:STEP (both ends included)"),
        ("a:b:c", "expected START:STOP:STEP, a comma-separated list or one number"),
        ("0:1:0.5", "values must lie in (0, 64], got 0"),
        ("1:2:0.0001", "10001 values on one axis; at most 1000"),
        ("1:inf:1", "range bounds and step must be finite numbers"),
    ],
)
def test_bad_axes_are_flag_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_axis(text, "--alpha")
    assert str(caught.value) == f"--alpha {text}: error: {message}"


def test_the_cli_reports_a_bad_range_against_the_flag(tmp_path: Path) -> None:
    code, out, err = run_main("grid", "b0", "-o", str(tmp_path / "out"), "--alpha", "2:1:0.1")
    assert code == 2 and out == ""
    assert one_error_line(err) == "--alpha 2:1:0.1: error: start 2 is above stop 1"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (("--budget", "50"), "--budget 50: error: no grid point's MACs ratio lies within 10% of 50"),
        (("--eta", "1"), "--eta: error: expected a whole number 2..100000, got 1"),
        (("--shard", "2/2"), "--shard 2/2: error: expected I/N with 0 <= I < N, e.g. 0/4"),
        (("--set", "epochs=3"), "--set epochs: error: the proxy schedule's length is --epochs, not a training key"),
        (("--set", "warmup=1"), "--set: error: unknown training key 'warmup'"),
    ],
)
def test_bad_settings_are_diagnostics_before_anything_is_written(
    tmp_path: Path, flags: tuple[str, ...], error: str
) -> None:
    spec = tmp_path / "grid_test.spec"
    spec.write_text(GRID_SPEC)
    code, _, err = run_main("grid", str(spec), "-o", str(tmp_path / "out"), "--alpha", "1", "--beta", "1", *flags)
    assert code == 2
    assert one_error_line(err).startswith(error), err
    assert not (tmp_path / "out").exists()


def test_shards_default_to_torchruns_rank() -> None:
    assert parse_shard(None, {}) == (0, 1)
    torchrun = {"RANK": "3", "WORLD_SIZE": "8", "MASTER_ADDR": "host0", "MASTER_PORT": "29400"}
    assert parse_shard(None, torchrun) == (3, 8)
    assert parse_shard("1/4", torchrun) == (1, 4)


@pytest.mark.parametrize(
    ("count", "epochs", "eta", "top", "rungs", "spent"),
    [
        # 20 networks, 9 epochs, eta 3: 20 x 1 epoch, the best 7 on to 3, the best 3 on to 9.
        (20, 9, 3, 3, [(1, 20), (3, 7), (9, 3)], 20 * 1 + 7 * 2 + 3 * 6),
        # 30 networks want four rungs (30 -> 10 -> 4 -> 2); 9 epochs allow three (1, 3, 9): 4 finalists.
        (30, 9, 3, 3, [(1, 30), (3, 10), (9, 4)], 30 * 1 + 10 * 2 + 4 * 6),
        (81, 27, 3, 1, [(1, 81), (3, 27), (9, 9), (27, 3)], 81 + 27 * 2 + 9 * 6 + 3 * 18),
        # 10 networks, eta 2: 10 -> 5 -> 3 (ceil(10 / 4), the top 3) in 3 rungs, budgets 2, 4, 8.
        (10, 8, 2, 3, [(2, 10), (4, 5), (8, 3)], 10 * 2 + 5 * 2 + 3 * 4),
        # no more networks than finalists: one rung, nothing pruned.
        (3, 9, 3, 3, [(9, 3)], 27),
        # one epoch leaves no room for a smaller budget: every network trains it.
        (12, 1, 3, 1, [(1, 12)], 12),
    ],
)
def test_successive_halving_plans_and_counts_epochs(
    count: int, epochs: int, eta: int, top: int, rungs: list[tuple[int, int]], spent: int
) -> None:
    plan = halving.plan(count, epochs, eta, top)
    assert [(rung.epochs, rung.size) for rung in plan] == rungs
    assert halving.epochs_spent(plan) == spent
    assert spent <= count * epochs


def test_ranking_breaks_accuracy_ties_by_loss_then_grid_order() -> None:
    scores = [
        halving.Score(candidate=0, accuracy=0.9, loss=0.5),
        halving.Score(candidate=1, accuracy=0.95, loss=0.7),
        halving.Score(candidate=2, accuracy=0.9, loss=0.4),
        halving.Score(candidate=3, accuracy=0.9, loss=0.4),
    ]
    assert halving.ranking(scores) == [1, 2, 3, 0]
    assert halving.ranking(reversed(scores)) == [1, 2, 3, 0]


def test_points_that_round_to_one_network_are_one_candidate(base: specdsl.SpecDocument) -> None:
    settings = GridSettings(alphas=(1.0, 2.0), betas=(1.0,), gammas=(1.0, 1.45, 1.5), tolerance=0.15, epochs=2)
    points = enumerate_grid(base, settings.alphas, settings.betas, settings.gammas, budget=2.0, tolerance=0.15)
    assert [(p.constants, p.resolution, p.kept) for p in points] == [
        ((1.0, 1.0, 1.0), 16, False),
        ((1.0, 1.0, 1.45), 24, True),  # 16 * 1.45 = 23.2 -> 24 (multiple of 4)
        ((1.0, 1.0, 1.5), 24, True),
        ((2.0, 1.0, 1.0), 16, True),
        ((2.0, 1.0, 1.45), 24, False),
        ((2.0, 1.0, 1.5), 24, False),
    ]
    assert points[0].ratio == 1.0 and points[1].ratio == points[2].ratio
    assert points[1].ideal == pytest.approx(2.1025) and points[2].ideal == pytest.approx(2.25)
    candidates = candidates_of(points, base, settings)
    assert [[p.index for p in c.points] for c in candidates] == [[1, 2], [3]]
    # The answer for a shared network: the point whose unrounded product is nearest the budget.
    assert closest_to_budget(list(candidates[0].points), 2.0).constants == (1.0, 1.0, 1.45)


def test_a_point_is_the_base_with_its_constants_scaled_by_phi_one(base: specdsl.SpecDocument) -> None:
    """The searched network is what `specdsl scale --phi 1` derives from the answer (the constants' own rule)."""
    doc = point_document(base, 1.4, 1.1, 1.3)
    scaled = specdsl.scale(specdsl.loads(GRID_SPEC, "g.spec"), width=1.1, depth=1.4, resolution=round(16 * 1.3))
    assert specdsl.api.resolve(doc).network() == scaled.network()
    assert (doc.scaling.alpha, doc.scaling.beta, doc.scaling.gamma) == (1.4, 1.1, 1.3)


def test_the_proxy_recipe_trains_at_the_points_resolution(base: specdsl.SpecDocument) -> None:
    doc = proxy_document(point_document(base, 1.0, 1.0, 1.5), base, epochs=2, overrides={"lr": 0.1})
    recipe = doc.training
    assert (recipe.epochs, recipe.progressive_stages, recipe.lr) == (2, 2, 0.1)  # 3 stages cannot fit 2 epochs
    assert (recipe.image_size.start, recipe.image_size.end) == (12.0, 24.0)  # 8 -> 16 at 16 px, now 24 px
    assert doc.input.resolution == 24 and (recipe.randaug, recipe.mixup) == (base.training.randaug, base.training.mixup)


def _config(base: specdsl.SpecDocument, **changes: object) -> dict:
    settings = GridSettings(alphas=(1.0, 1.2), betas=(1.0,), gammas=(1.0,))
    return {**settings.config(base), **changes}


def _fields(candidate: int, rung: int, accuracy: float) -> dict:
    return {"candidate": candidate, "rung": rung, "epochs": 1, "accuracy": accuracy, "loss": 1.0, "seconds": 1.0,
            "device": "cpu", "macs": 1, "ratio": 2.0, "params": 1, "resolution": 16, "network": "n",
            "points": [[1.0, 1.0, 1.0]], "shard": "0/1"}  # fmt: skip


def test_an_output_directory_holds_one_configuration(tmp_path: Path, base: specdsl.SpecDocument) -> None:
    config = _config(base)
    store.GridStore(tmp_path / "out", config).prepare()
    store.GridStore(tmp_path / "out", config).prepare()  # the same search: continue
    with pytest.raises(SpecError, match=r"another configuration \(alpha differs, budget 2.0 there, 2.5 here\)"):
        store.GridStore(tmp_path / "out", {**config, "budget": 2.5, "alpha": [1.0]}).prepare()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SpecError, match="not empty and not a grid search"):
        store.GridStore(tmp_path / "other", config).prepare()


def test_results_merge_across_shard_logs_and_skip_a_torn_line(tmp_path: Path, base: specdsl.SpecDocument) -> None:
    grid = store.GridStore(tmp_path, _config(base))
    grid.append((0, 1), grid.record(_fields(0, 0, 0.5)))
    grid.append((1, 2), grid.record(_fields(1, 0, 0.7)))
    with (tmp_path / store.results_file((0, 2))).open("a") as handle:
        handle.write('{"candidate": 2, "rung"')  # a crash mid-write
    assert store.results_file((1, 2)) == "results.shard-1-of-2.jsonl"
    assert sorted(grid.results()) == [(0, 0), (1, 0)]
    grid.append((0, 2), grid.record(_fields(2, 0, 0.6)))  # the torn line is dropped first
    assert sorted(grid.results()) == [(0, 0), (1, 0), (2, 0)]
    assert (tmp_path / store.results_file((0, 2))).read_text().count("\n") == 1
    other = store.GridStore(tmp_path, _config(base, budget=3.0))  # a record of another search is refused
    with pytest.raises(SpecError, match=r"results.jsonl:1: error: damaged grid state: the record does not match"):
        other.results()
