"""A whole run on builtin:digits: the schedule it logs is the recipe's, a stopped run resumes to the same
weights, every output exists and loads, and bad invocations are diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")
pytest.importorskip("sklearn")

import specdsl  # noqa: E402
from specdsl import weights as canonical  # noqa: E402
from specdsl.errors import SpecError  # noqa: E402
from specdsl.training import TrainOptions, train  # noqa: E402
from specdsl.training.checkpoint import load as load_checkpoint  # noqa: E402
from specdsl.training.data import open_source  # noqa: E402
from specdsl.training.evaluate import evaluate, file_predictor, held_out, torch_predictor  # noqa: E402
from tests.conftest import run_cli, run_main  # noqa: E402

from .conftest import TRAIN_SPEC  # noqa: E402

OPTIONS = TrainOptions(threads=1, quiet=True)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 6-epoch run, shared by the tests that only read its outputs."""
    directory = tmp_path_factory.mktemp("run")
    spec = directory / "digits_test.spec"
    spec.write_text(TRAIN_SPEC)
    train(spec, directory / "run", OPTIONS)
    return directory / "run"


def test_metrics_record_the_recipes_schedule(finished_run: Path) -> None:
    """Each epoch's image size, RandAugment, mixup, dropout and drop-path are the recipe's formulas for its
    stage: size int(8 + 8 * k/3); the others numpy.linspace(min, max, 3). Dropout is read back from the model."""
    records = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(6))
    stage_of_epoch = [0, 0, 1, 1, 2, 2]  # 6 epochs in 3 equal stages
    expected = {
        "stage": [1, 2, 3],
        "image_size": [int(8 + (16 - 8) * k / 3) for k in (1, 2, 3)],
        "randaug": np.linspace(0.2, 0.6, 3).tolist(),
        "mixup": np.linspace(0, 0.4, 3).tolist(),
        "dropout": np.linspace(0.1, 0.3, 3).tolist(),
        "drop_path": np.linspace(0.05, 0.25, 3).tolist(),
    }
    assert expected["image_size"] == [10, 13, 16]
    for record, stage in zip(records, stage_of_epoch, strict=True):
        for key, values in expected.items():
            assert record[key] == pytest.approx(values[stage], rel=1e-12, abs=1e-12), (record["epoch"], key)
        assert record["randaug_layers"] == 2
        assert np.isfinite(record["train_loss"]) and 0 <= record["eval_accuracy"] <= 1
    assert max(r["eval_accuracy"] for r in records) > 0.25  # six tiny epochs, 10 px digits: above chance (0.1)


def test_run_directory_holds_loadable_outputs(finished_run: Path) -> None:
    ir = specdsl.load(finished_run / "spec.spec")
    assert ir.training.epochs == 6 and ir.name == "digits-test"
    best = canonical.load(finished_run / "best.safetensors", ir)  # canonical names and shapes, checked
    summary = json.loads((finished_run / "best.json").read_text())
    assert len(summary["predictions"]) == 360 and 0 < summary["accuracy"] <= 1
    records = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert summary["accuracy"] == max(r["eval_accuracy"] for r in records)
    loaded = load_checkpoint(finished_run / "checkpoint", ir)
    assert (loaded.progress.epoch, loaded.progress.step) == (6, 6 * (1437 // 64))
    assert loaded.ema is not None and loaded.optimizer_state["state"]
    assert set(best) == set(loaded.weights)
    assert (finished_run / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any(path.suffix in (".pt", ".pth", ".pkl") for path in finished_run.rglob("*"))


def test_stopped_after_stage_one_and_resumed_ends_with_the_same_weights(finished_run: Path, tmp_path: Path) -> None:
    """RandAugment, mixup, dropout and drop-path all draw random numbers: every RNG must come back."""
    spec = tmp_path / "digits_test.spec"
    spec.write_text(TRAIN_SPEC)
    run = tmp_path / "run"
    before = torch.get_num_threads()
    first = train(spec, run, TrainOptions(threads=1, quiet=True, stop_at_epoch=2))  # stage 1 is epochs 0-1
    assert first.epochs == 2
    assert torch.get_num_threads() == before  # the run's thread count (1) is given back to the process
    resumed = train(spec, run, TrainOptions(threads=1, quiet=True, resume=True))
    assert resumed.epochs == 6
    ir = specdsl.load(spec)
    for name in ("weights", "ema"):
        expected = canonical.load(finished_run / "checkpoint" / f"{name}.safetensors", ir)
        actual = canonical.load(run / "checkpoint" / f"{name}.safetensors", ir)
        for key, value in expected.items():
            np.testing.assert_array_equal(actual[key], value, err_msg=f"{name}: {key}")  # bit for bit
    expected_state = load_checkpoint(finished_run / "checkpoint", ir).optimizer_state["state"]
    actual_state = load_checkpoint(run / "checkpoint", ir).optimizer_state["state"]
    for index, entries in expected_state.items():
        for key, value in entries.items():
            assert torch.equal(actual_state[index][key], value)
    drop = ("train_seconds", "images_per_second")
    metrics = [
        [{k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()]
        for path in (finished_run / "metrics.jsonl", run / "metrics.jsonl")
    ]
    assert metrics[0] == metrics[1]


def test_cli_refuses_bad_runs_with_diagnostics(finished_run: Path, tmp_path: Path, train_spec: str) -> None:
    busy = run_cli("train", train_spec, "-o", str(finished_run), "-q")
    assert busy.returncode == 2 and "not empty: --resume continues it, --force restarts" in busy.stderr
    other = run_cli("train", train_spec, "-o", str(finished_run), "--resume", "--epochs", "7")
    assert other.returncode == 2 and "differs from the run being resumed" in other.stderr
    nothing = run_cli("train", train_spec, "-o", str(tmp_path / "new"), "--resume")
    assert nothing.returncode == 2 and "nothing to resume" in nothing.stderr
    for flag, message in (("randaug=5 -> 40", "randaug must lie in [0, 30]"), ("optimiser=sgd", "unknown training")):
        bad = run_cli("train", train_spec, "-o", str(tmp_path / "x"), "--set", flag)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    with pytest.raises(SpecError, match="has 10 classes but the network has 1000 outputs"):
        train("b0", tmp_path / "b0", OPTIONS)
    with pytest.raises(SpecError, match="unknown built-in data set"):
        train(train_spec, tmp_path / "y", TrainOptions(data="builtin:cifar"))


def _built(backend: str, spec: Path, weights: Path, out: Path) -> Path:
    """``specdsl build`` of the run's spec and weights for ``backend``: the model file it writes."""
    pytest.importorskip({"torch": "torch", "onnx": "onnxruntime", "keras": "keras"}[backend])
    built = run_cli("build", str(spec), "--backend", backend, "--weights", str(weights), "-o", str(out), "--json")
    assert built.returncode == 0, built.stderr
    return Path(json.loads(built.stdout)["written"][0])


def test_trained_weights_deploy_with_the_same_predictions(finished_run: Path, tmp_path: Path) -> None:
    """best.safetensors through specdsl.build and through ``specdsl build`` for every backend (the emitted
    torch module, the .onnx file in onnxruntime, the .keras file in Keras) gives exactly the held-out
    predictions, hence accuracy, that the trainer recorded."""
    spec, best = finished_run / "spec.spec", finished_run / "best.safetensors"
    summary = json.loads((finished_run / "best.json").read_text())
    ir = specdsl.load(spec)
    batches = list(held_out(ir, open_source("builtin:digits", ir.in_channels)))
    predictors = {
        "specdsl.build": torch_predictor(specdsl.build(ir, weights=best)),
        **{
            f"specdsl build --backend {backend}": file_predictor(_built(backend, spec, best, tmp_path / backend))
            for backend in ("torch", "onnx", "keras")
        },
    }
    for name, predict in predictors.items():
        result = evaluate(predict, batches)
        assert result.accuracy == summary["accuracy"], name
        assert result.predictions.tolist() == summary["predictions"], name
    # Folding BN into the convs (deploy=True) changes rounding only; on these images no prediction moves.
    folded = evaluate(torch_predictor(specdsl.build(ir, weights=best, deploy=True)), batches)
    assert folded.predictions.tolist() == summary["predictions"]


def test_predict_on_the_held_out_images_as_files_gives_the_runs_predictions(finished_run: Path, tmp_path: Path) -> None:
    """`specdsl predict RUN_DIR` on the 360 held-out digits saved as PNG files (lossless): the class names and the
    whole-image view come from best.json, and every top-1 class is the one the trainer recorded."""
    from PIL import Image

    summary = json.loads((finished_run / "best.json").read_text())
    assert summary["classes"] == [str(digit) for digit in range(10)] and summary["center_crop"] is False
    held = open_source("builtin:digits", 3).held_out
    for index in range(len(held)):
        Image.fromarray(held.image(index)[0].numpy()).save(tmp_path / f"{index:03d}.png")  # greyscale 8x8
    code, stdout, stderr = run_main("predict", str(finished_run), str(tmp_path), "--top", "1", "--json")
    assert code == 0, stderr
    found = json.loads(stdout)
    assert found["view"] == "whole" and len(found["images"]) == 360
    assert [image["top"][0]["class"] for image in found["images"]] == summary["predictions"]
    assert all(image["top"][0]["label"] == str(image["top"][0]["class"]) for image in found["images"])
