"""A whole search on builtin:digits (two networks, two rungs, 1- and 2-epoch proxies): every output, the
successive-halving accounting, the answer as a spec every backend builds, rerunning, and parallel and
torchrun-sharded runs that reproduce the sequential one exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")
pytest.importorskip("sklearn")

import specdsl  # noqa: E402
from specdsl import reference  # noqa: E402
from specdsl.backends.onnx import session  # noqa: E402
from specdsl.grid import search, worker  # noqa: E402
from specdsl.grid.search import GridSettings  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402
from tests.calibrated import images, random_weights  # noqa: E402
from tests.conftest import ROOT, one_error_line, run_main  # noqa: E402

from .conftest import GRID_FLAGS, GRID_SPEC, PROXY_FLAGS, TRAIN_IMAGES  # noqa: E402

OUTPUTS = {"grid.json", "results.jsonl", "table.md", "accuracy_vs_macs.png", "best.spec", "summary.json", "runs"}


def results(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def outcomes(out: Path) -> dict[tuple[int, int], tuple[float, float]]:
    """(candidate, rung) -> (accuracy, loss), from every results file of a search."""
    found = {}
    for path in out.glob("results*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            found[(record["candidate"], record["rung"])] = (record["accuracy"], record["loss"])
    return found


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One sequential search through the CLI: (base spec, output directory, what it printed)."""
    directory = tmp_path_factory.mktemp("grid")
    spec = directory / "grid_test.spec"
    spec.write_text(GRID_SPEC)
    code, out, err = run_main("grid", str(spec), "-o", str(directory / "out"), *GRID_FLAGS, *PROXY_FLAGS)
    assert code == 0, err
    return spec, directory / "out", out


def test_a_search_writes_every_output(searched: tuple[Path, Path, str]) -> None:
    _, out, printed = searched
    assert {path.name for path in out.iterdir()} == OUTPUTS
    assert sorted(path.name for path in (out / "runs").iterdir()) == ["n000", "n001"]
    # Two networks to epoch 1, the better one on to epoch 2: three results, one line each.
    records = results(out)
    assert len(records) == 3  # which network wins depends on the init: rung 0 is both, whichever wins
    assert sorted((r["candidate"], r["rung"], r["epochs"]) for r in records if r["rung"] == 0) == [(0, 0, 1), (1, 0, 1)]
    (final,) = [r for r in records if r["rung"] == 1]
    first = {r["candidate"]: r for r in records if r["rung"] == 0}
    winner, _ = sorted(first, key=lambda c: (-first[c]["accuracy"], first[c]["loss"], c))
    assert final["candidate"] == winner and final["epochs"] == 2
    for record in records:  # each result is the trainer's held-out evaluation after exactly that epoch
        metrics = [json.loads(line) for line in (out / "runs" / f"n{record['candidate']:03d}" / "metrics.jsonl")
                   .read_text().splitlines()]  # fmt: skip
        assert (record["accuracy"], record["loss"]) == (
            metrics[record["epochs"] - 1]["eval_accuracy"],
            metrics[record["epochs"] - 1]["eval_loss"],
        )
        assert 0 <= record["accuracy"] <= 1 and record["seconds"] > 0 and record["device"] == "cpu"
    assert len(metrics) == (2 if record["candidate"] == winner else 1)  # the pruned network stopped at epoch 1
    assert metrics[0]["step"] == TRAIN_IMAGES // 64  # the fixed subset, batches of 64
    assert not list((out / "runs").glob("*/plot.png"))  # no per-run plots: the search draws one
    # The proxy trained n000 (24 px) at progressive sizes scaled from the base's 8 -> 16.
    n000 = specdsl.load(out / "runs" / "n000" / "spec.spec")
    assert (n000.resolution, n000.training.image_size.start, n000.training.image_size.end) == (24, 12.0, 24.0)
    assert n000.training.epochs == 2

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["epochs_spent"], summary["epochs_full_grid"]) == (3, 4)  # 2 x 1 + 1 x (2 - 1) against 2 x 2
    assert summary["rungs"] == [{"epochs": 1, "networks": 2}, {"epochs": 2, "networks": 1}]
    assert (summary["points"], summary["kept"], summary["networks"]) == (6, 3, 2)
    assert [p["kept"] for p in summary["grid_points"]] == [False, True, True, True, False, False]
    table = (out / "table.md").read_text()
    assert "epochs trained: **3**, against 4 for every network's full 2-epoch proxy (1 fewer)" in table
    kept, outside = table.split("<details>")
    rows = [line for line in kept.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3 and rows[0].startswith("| 1* |")  # every kept point; the chosen one first
    assert "3 grid points outside the budget" in outside
    assert "| 1 | 1 | 1 | 1.000 | 1.000 | " in outside  # the base itself: ratio 1
    assert "3 epochs trained instead of 4 (1 fewer)" in printed
    png = (out / "accuracy_vs_macs.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 300_000


def test_the_answer_is_the_base_carrying_the_constants(searched: tuple[Path, Path, str]) -> None:
    spec, out, _ = searched
    summary = json.loads((out / "summary.json").read_text())
    best = summary["best"]
    code, _, err = run_main("check", str(out / "best.spec"))
    assert code == 0, err
    found = specdsl.load(out / "best.spec")
    assert (found.spec.scaling.alpha, found.spec.scaling.beta, found.spec.scaling.gamma) == (
        best["alpha"], best["beta"], best["gamma"])  # fmt: skip
    assert found.network() == specdsl.load(spec).network()  # phi = 0: the base network itself
    # phi = 1 derives the network the search trained, exactly; for a shared network, the constants whose
    # idealised product is nearest the budget.
    trained = specdsl.load(out / "runs" / best["network"] / "spec.spec")
    assert specdsl.scale(found, phi=1).network() == trained.network()
    if best["network"] == "n000":
        assert (best["alpha"], best["beta"], best["gamma"]) == (1.0, 1.0, 1.45)


@pytest.mark.parametrize("phi", [0, 1])
def test_the_found_spec_builds_with_every_backend(searched: tuple[Path, Path, str], phi: int) -> None:
    """Each backend's logits for best.spec (and its phi = 1 network) are the numpy oracle's, same weights."""
    found = specdsl.scale(specdsl.load(searched[1] / "best.spec"), phi=phi) if phi else specdsl.load(
        searched[1] / "best.spec")  # fmt: skip
    state = random_weights(found, seed=3)
    x = images(2, found.resolution, seed=4, channels=found.in_channels)
    expected = reference.run(lower(found), state, x)
    tensors = {name: torch.from_numpy(value) for name, value in state.items()}
    model = specdsl.build(found, "torch", weights=tensors).eval()
    with torch.no_grad():
        outputs = {"torch": model(torch.from_numpy(x)).numpy()}
    keras = specdsl.build(found, "keras", weights=state)
    outputs["keras"] = np.asarray(keras(x.transpose(0, 2, 3, 1), training=False))
    onnx_model = specdsl.build(found, "onnx", weights=state)
    outputs["onnx"] = session(onnx_model, threads=1).run(["logits"], {"input": x})[0]
    for backend, logits in outputs.items():
        assert np.abs(logits - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max()), backend


def test_a_rerun_trains_nothing_and_other_settings_are_refused(
    searched: tuple[Path, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, out, _ = searched
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = (copy / "results.jsonl").read_text()

    def no_training(*args: object) -> None:
        raise AssertionError("a finished network was trained again")

    monkeypatch.setattr(worker, "train_task", no_training)
    code, printed, err = run_main("grid", str(spec), "-o", str(copy), *GRID_FLAGS, *PROXY_FLAGS, "--json")
    assert code == 0, err
    assert "0 to train here (2 already done)" in err and (copy / "results.jsonl").read_text() == before
    assert json.loads(printed) == json.loads((out / "summary.json").read_text().replace(str(out), str(copy)))
    assert (copy / "best.spec").read_text() == (out / "best.spec").read_text()

    code, _, err = run_main("grid", str(spec), "-o", str(copy), *GRID_FLAGS, *PROXY_FLAGS[:-2], "--epochs", "4")
    assert code == 2
    assert one_error_line(err) == (
        f"{copy}: error: holds a grid search with another configuration (epochs 2 there, 4 here); "
        "rerun with the same settings to continue it, or choose another -o"
    )


def test_a_network_stopped_after_its_epoch_is_not_trained_again(
    searched: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """Killed after the trainer's checkpoint but before the result was logged: the rerun reads the result back
    from the run (the checkpoint is at the rung's epoch, so nothing trains) and logs the same numbers."""
    spec, out, _ = searched
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    lines = (copy / "results.jsonl").read_text().splitlines()
    (copy / "results.jsonl").write_text("\n".join(line for line in lines if '"rung": 1' not in line) + "\n")
    metrics_before = {p: p.read_text() for p in (copy / "runs").glob("*/metrics.jsonl")}
    settings = GridSettings(alphas=(1.0, 2.0), betas=(1.0,), gammas=(1.0, 1.45, 1.5), tolerance=0.15, epochs=2,
                            eta=2, top=1, train_images=TRAIN_IMAGES)  # fmt: skip
    result = search.search(specdsl.load(spec).spec, copy, settings, threads=1, log=lambda message: None)
    assert outcomes(copy) == outcomes(out)
    assert {p: p.read_text() for p in (copy / "runs").glob("*/metrics.jsonl")} == metrics_before
    assert result.best.name == json.loads((out / "summary.json").read_text())["best"]["network"]


@pytest.mark.slow
def test_parallel_jobs_and_torchrun_shards_reproduce_the_sequential_search(
    searched: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """--jobs 2 (spawned processes) and two torchrun ranks (each a shard training alone, waiting for the other's
    rung) record the very numbers of the sequential search: one thread each, seeded the same."""
    spec, out, _ = searched
    command = ["-m", "specdsl", "grid", str(spec), *GRID_FLAGS, *PROXY_FLAGS]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    sharded = subprocess.Popen([*torchrun, *command, "-o", str(tmp_path / "sharded")], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    code, _, err = run_main("grid", str(spec), "-o", str(tmp_path / "jobs"), *GRID_FLAGS, *PROXY_FLAGS, "--jobs", "2")
    assert code == 0, err
    _, stderr = sharded.communicate(timeout=300)
    assert sharded.returncode == 0, stderr[-3000:]
    assert outcomes(tmp_path / "jobs") == outcomes(out)
    assert outcomes(tmp_path / "sharded") == outcomes(out)
    shard_logs = sorted(path.name for path in (tmp_path / "sharded").glob("results.shard-*.jsonl"))
    assert shard_logs == ["results.shard-0-of-2.jsonl", "results.shard-1-of-2.jsonl"]
    for index in (0, 1):  # each rank trained its own networks (every 2nd of each rung), no other
        records = [json.loads(line) for line in (tmp_path / "sharded" / shard_logs[index]).read_text().splitlines()]
        assert {r["shard"] for r in records} == {f"{index}/2"}
    assert (tmp_path / "sharded" / "best.spec").read_text() == (out / "best.spec").read_text()
    merged = [json.loads(line) for line in (tmp_path / "sharded" / "results.jsonl").read_text().splitlines()]
    assert {(r["candidate"], r["rung"]): (r["accuracy"], r["loss"]) for r in merged} == outcomes(out)


def test_slots_split_the_machine_between_jobs_and_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    Slot = worker.Slot
    monkeypatch.setattr(worker, "cpu_count", lambda: 16)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert worker.local_slots(None, environ={}) == [Slot("cpu", 16)]
    assert worker.local_slots(4, environ={}) == [Slot("cpu", 4)] * 4
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker.local_slots(None, environ={}) == [Slot("cuda:0", 8), Slot("cuda:1", 8)]  # one network per GPU
    assert worker.local_slots(3, 1, environ={}) == [Slot("cuda:0", 1), Slot("cuda:1", 1), Slot("cuda:0", 1)]
    # torchrun with 8 ranks here: each rank trains on its own cuda:LOCAL_RANK (the trainer's default) or CPU share.
    assert worker.local_slots(None, environ={"LOCAL_WORLD_SIZE": "8"}) == [Slot(None, 2)]
