"""``specdsl grid``: enumerate, filter by measured MACs, train with successive halving, rank, report.

The grid's points that round to the same network are one *candidate* (trained once, under
``runs/n<k>``). Every rung's results go to the results log as they come in; a rerun with the same output
directory skips what is recorded and resumes a network from its checkpoint. A shard (``--shard I/N``, or a
torchrun rank) trains every N-th network of each rung and then waits until the other shards' results for
that rung are in the directory, so all shards promote the same networks; shard 0 writes the report.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specdsl.errors import SpecError
from specdsl.grid import halving, store
from specdsl.grid.proxy import Task, proxy_document, proxy_options, proxy_text
from specdsl.grid.result import Candidate, GridResult, GridSettings
from specdsl.grid.space import GridPoint, closest_to_budget, enumerate_grid, point_document
from specdsl.grid.store import GridStore, ResultRecord
from specdsl.passes.resolve import resolve
from specdsl.spec import SpecDocument
from specdsl.training.options import MAX_THREADS, check_whole
from specdsl.training.recipe import with_recipe

if TYPE_CHECKING:
    from specdsl.grid.worker import Runner  # imports torch: loaded when a search runs

Log = Callable[[str], None]
POLL_SECONDS = (0.1, 5.0)  # a shard looks for the other shards' results after 0.1 s, then twice as late, up to 5 s
MAX_JOBS = 1024  # parallel trainings on one machine
MAX_SHARDS = 100_000
Results = dict[tuple[int, int], ResultRecord]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def candidates_of(points: list[GridPoint], base: SpecDocument, settings: GridSettings) -> list[Candidate]:
    """The kept points grouped by network, in grid order of each network's first point."""
    groups: dict[str, list[GridPoint]] = {}
    for point in points:
        if point.kept:
            groups.setdefault(point.network, []).append(point)
    candidates = []
    for index, members in enumerate(groups.values()):
        scaled = point_document(base, *members[0].constants)
        scaled = scaled.model_copy(update={"name": f"{base.name}-n{index:03d}"})
        proxy = proxy_document(scaled, base, epochs=settings.epochs, overrides=settings.recipe)
        candidates.append(Candidate(index, tuple(members), proxy_text(proxy)))
    return candidates


def _no_point_kept(points: list[GridPoint], settings: GridSettings) -> SpecError:
    ratios = [point.ratio for point in points if point.error is None]
    seen = f"measured ratios run from {min(ratios):.3g} to {max(ratios):.3g}" if ratios else "no point scales"
    return SpecError(
        f"no grid point's MACs ratio lies within {100 * settings.tolerance:g}% of {settings.budget:g} ({seen})",
        path=f"--budget {settings.budget:g}",
        hint="widen --tolerance or move the --alpha/--beta/--gamma ranges",
    )


def check_running(jobs: int | None, threads: int | None, shard: tuple[int, int]) -> None:
    """How the search runs here: ``--jobs``, ``--threads``, ``--shard``."""
    check_whole(jobs, "--jobs", 1, MAX_JOBS, optional=True)
    check_whole(threads, "--threads", 1, MAX_THREADS, optional=True)
    if not (isinstance(shard, tuple) and len(shard) == 2 and all(type(part) is int for part in shard)):
        raise SpecError(f"expected (index, count), got {shard!r}", path="--shard")
    if not 0 <= shard[0] < shard[1] <= MAX_SHARDS:
        raise SpecError(f"expected I/N with 0 <= I < N <= {MAX_SHARDS}, got {shard[0]}/{shard[1]}", path="--shard")


def check_data(base: SpecDocument, settings: GridSettings) -> str | None:
    """What the data must agree on with every network of the grid (they share the base's input and head): it
    opens, decodes to the network's input channels, and has as many classes as the network has outputs. Returns
    how its held-out split was made, where the data did not say."""
    from specdsl.training.data import check_classes, open_source, with_train_subset

    ir = resolve(base)
    source = with_train_subset(open_source(settings.data, ir.in_channels), settings.train_images)
    check_classes(source, ir.head.classes, path=f"--data {settings.data}", spec="the base spec")
    return source.note


def search(
    base: SpecDocument,
    out: str | Path,
    settings: GridSettings,
    *,
    jobs: int | None = None,
    threads: int | None = None,
    shard: tuple[int, int] = (0, 1),
    log: Log = _stderr,
) -> GridResult:
    """Run (or continue) the search into ``out``; shard 0 of N writes the report there. Everything that can be
    checked (settings, environment, data against the network, the grid, a previous search's state) is checked
    before anything is written."""
    from specdsl.grid import report
    from specdsl.grid.worker import Runner, local_slots

    settings.check()
    check_running(jobs, threads, shard)
    slots = local_slots(jobs, threads)
    out = Path(out)
    with_recipe(base, settings.recipe)  # bad --set keys are diagnostics before anything is computed
    note = check_data(base, settings)
    points = enumerate_grid(
        base, settings.alphas, settings.betas, settings.gammas, budget=settings.budget, tolerance=settings.tolerance
    )
    candidates = candidates_of(points, base, settings)
    if not candidates:
        raise _no_point_kept(points, settings)
    rungs = halving.plan(len(candidates), settings.epochs, settings.eta, settings.top)
    grid_store = GridStore(out, settings.config(base))
    grid_store.prepare()
    _check_results(grid_store, candidates, rungs)
    (out / store.RUNS_DIR).mkdir(exist_ok=True)
    kept = sum(point.kept for point in points)
    if note:
        log(note)
    log(f"{len(points)} grid points, {kept} within the budget, {len(candidates)} distinct networks; "
        f"{len(rungs)} rung(s) of {', '.join(f'{r.size} x {r.epochs} epochs' for r in rungs)}")  # fmt: skip

    with Runner(slots) as runner:
        promoted = _run_rungs(runner, grid_store, candidates, rungs, settings, shard, log)

    recorded = _check_results(grid_store, candidates, rungs)
    results = {(c, rung): recorded[(c, rung)] for rung, members in enumerate(promoted) for c in members}
    ranking = _final_ranking(promoted, results)
    best = candidates[ranking[0]]  # valid: every rung, the last included, had a valid score (_run_rungs)
    result = GridResult(
        settings=settings,
        base=base,
        points=points,
        candidates=candidates,
        rungs=rungs,
        results=results,
        ranking=ranking,
        chosen=closest_to_budget(list(best.points), settings.budget),
    )
    if shard[0] == 0:
        report.write(result, out, merge_log=shard[1] > 1)
    return result


def _check_results(grid_store: GridStore, candidates: list[Candidate], rungs: list[halving.Rung]) -> Results:
    """The recorded results, each a network and rung of this search (the store has checked each record)."""
    results = grid_store.results()
    for (candidate, rung), record in results.items():
        if candidate >= len(candidates) or rung >= len(rungs) or record.epochs != rungs[rung].epochs or (
            record.network != candidates[candidate].first.network
        ):  # fmt: skip
            raise SpecError(
                f"damaged grid state: a result for network n{candidate:03d} at rung {rung + 1}, "
                "which this search does not have",
                path=str(grid_store.out),
                hint=f"to start the search afresh, remove {grid_store.out} (or choose another -o)",
            )
    return results


def _run_rungs(
    runner: Runner,
    grid_store: GridStore,
    candidates: list[Candidate],
    rungs: list[halving.Rung],
    settings: GridSettings,
    shard: tuple[int, int],
    log: Log,
) -> list[list[int]]:
    """Train this shard's share of each rung (skipping recorded results), then promote the rung's best; the
    networks of each rung."""
    out = grid_store.out
    eval_every = math.gcd(*(rung.epochs for rung in rungs))
    members = [candidate.index for candidate in candidates]
    promoted = []
    for rung in rungs:
        promoted.append(members)
        done = grid_store.results()
        mine = [c for position, c in enumerate(members) if position % shard[1] == shard[0]]
        tasks = [_task(candidates[c], rung, out, settings, eval_every) for c in mine if (c, rung.index) not in done]
        log(f"rung {rung.index + 1}/{len(rungs)}: {len(members)} networks to epoch {rung.epochs}, "
            f"{len(tasks)} to train here ({len(mine) - len(tasks)} already done)")  # fmt: skip
        for task, outcome in runner.run(tasks):
            candidate = candidates[task.candidate]
            record = grid_store.record(_record(candidate, rung, outcome, shard))
            grid_store.append(shard, record)
            accuracy = f"{100 * record.accuracy:.2f}%"
            log(f"  {candidate.name} {_constants(candidate.first)}: {accuracy} after {rung.epochs} epoch(s), "
                f"{record.seconds:.1f} s")  # fmt: skip
        done = _wait_for(grid_store, members, rung, log)
        if not any(halving.valid(_score(done, c, rung.index)) for c in members):
            # NaN and inf rank last, so a rung with one valid score promotes it and the answer is valid; with
            # none there is no answer, and promoting diverged networks would only train them longer.
            raise SpecError(
                "no network reached a finite held-out accuracy and loss (every proxy run diverged)",
                path=str(out),
                hint="lower the learning rate (--set lr=...) and rerun with another -o",
            )
        if rung.index + 1 < len(rungs):
            members = halving.ranking(_score(done, c, rung.index) for c in members)[: rungs[rung.index + 1].size]
    return promoted


def _score(results: Results, candidate: int, rung: int) -> halving.Score:
    record = results[(candidate, rung)]
    return halving.Score(candidate, record.accuracy, record.loss)


def _constants(point: GridPoint) -> str:
    return f"(α {point.alpha:g}, β {point.beta:g}, γ {point.gamma:g})"


def _task(candidate: Candidate, rung: halving.Rung, out: Path, settings: GridSettings, eval_every: int) -> Task:
    return Task(
        candidate=candidate.index,
        rung=rung.index,
        spec_text=candidate.spec_text,
        run_dir=str(out / store.RUNS_DIR / candidate.name),
        options=proxy_options(
            data=settings.data,
            seed=settings.seed,
            train_images=settings.train_images,
            epochs=rung.epochs,
            eval_every=eval_every,
        ),
    )


def _record(candidate: Candidate, rung: halving.Rung, outcome: dict[str, Any], shard: tuple[int, int]) -> dict:
    point = candidate.first
    return {
        "candidate": candidate.index,
        "rung": rung.index,
        "epochs": rung.epochs,
        **outcome,
        "macs": point.macs,
        "ratio": point.ratio,
        "params": point.params,
        "resolution": point.resolution,
        "network": point.network,
        "points": [list(p.constants) for p in candidate.points],
        "shard": f"{shard[0]}/{shard[1]}",
    }


def _wait_for(grid_store: GridStore, members: list[int], rung: halving.Rung, log: Log) -> Results:
    """The results once every network of the rung has one (other shards may still be training theirs)."""
    pause, longest = POLL_SECONDS
    while True:
        done = grid_store.results()
        missing = [c for c in members if (c, rung.index) not in done]
        if not missing:
            return done
        if pause == POLL_SECONDS[0]:
            log(f"  waiting for {len(missing)} result(s) of rung {rung.index + 1} from the other shards")
        time.sleep(pause)
        pause = min(2 * pause, longest)


def _final_ranking(promoted: list[list[int]], results: Results) -> list[int]:
    """Best first: the networks of the last rung by their score there, then those pruned a rung earlier by
    theirs, ...; a network whose last score is not valid (NaN, inf) after every one whose is."""
    ranked: list[int] = []
    last: dict[int, halving.Score] = {}
    for rung in reversed(range(len(promoted))):
        reached = [c for c in promoted[rung] if c not in last]
        last |= {c: _score(results, c, rung) for c in reached}
        ranked += halving.ranking(last[c] for c in reached)
    return sorted(ranked, key=lambda c: not halving.valid(last[c]))  # stable: the order above within each
