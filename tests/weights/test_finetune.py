"""`specdsl train --init`: fine-tuning from weights on an ImageFolder with another class count, frozen layers
bit-identical, layer-wise learning rates, a resumed fine-tuning run equal to an uninterrupted one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")
sklearn_datasets = pytest.importorskip("sklearn.datasets")
Image = pytest.importorskip("PIL.Image")

import specdsl  # noqa: E402
from specdsl import weights  # noqa: E402
from specdsl.training import TrainOptions, train  # noqa: E402
from tests.conftest import listing, one_error_line, run_cli  # noqa: E402
from tests.training.conftest import TRAIN_SPEC  # noqa: E402

#: Three epochs in one progressive stage, small batches: seconds on one thread.
RECIPE = {"epochs": 3, "progressive_stages": 1, "batch_size": 16}


def digits_folder(root: Path, classes: tuple[int, ...], per_class: int = 24) -> Path:
    """An ImageFolder (train/ and val/) of scikit-learn digits of ``classes`` only."""
    digits = sklearn_datasets.load_digits()
    for split, (low, high) in (("train", (0, per_class)), ("val", (per_class, per_class + 8))):
        for label in classes:
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True)
            for index, image in enumerate(digits.images[digits.target == label][low:high]):
                Image.fromarray((image * 16).clip(0, 255).astype(np.uint8), "L").save(folder / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetune")
    spec = root / "digits_test.spec"
    spec.write_text(TRAIN_SPEC)
    ir = specdsl.load(spec)
    init = weights.initial(ir, seed=3)
    init = {name: value + 0.01 * (i % 7) if name.endswith("running_mean") else value for i, (name, value) in
            enumerate(init.items())}  # fmt: skip
    weights.save(init, root / "init.safetensors", ir=ir)
    return {
        "root": root,
        "spec": spec,
        "init": root / "init.safetensors",
        "data": digits_folder(root / "data", (7, 8, 9)),
    }


def options(setup: dict[str, Path], **extra: object) -> TrainOptions:
    return TrainOptions(data=str(setup["data"]), recipe=RECIPE, threads=1, quiet=True, init=str(setup["init"]), **extra)


def test_frozen_layers_stay_bit_identical_and_the_head_is_rebuilt(setup: dict[str, Path], tmp_path: Path) -> None:
    result = train(setup["spec"], tmp_path / "run", options(setup, freeze="stages.0", lr_decay=0.5))
    init = weights.load(setup["init"], specdsl.load(setup["spec"]))
    spec_text = (tmp_path / "run" / "spec.spec").read_text()
    assert "classes = 3" in spec_text and "classifier rebuilt for 3 classes (the spec has 10)" in spec_text
    assert "--freeze stages.0 --lr-decay 0.5" in spec_text and "sha256" in spec_text
    tuned = specdsl.loads(spec_text, "spec.spec")
    for path in (tmp_path / "run" / "checkpoint" / "weights.safetensors", result.best_weights):
        trained = weights.load(path, tuned)
        frozen = [name for name in trained if name.startswith(("stem.", "stages.0."))]
        assert frozen and all(np.array_equal(trained[name], init[name]) for name in frozen)  # BN statistics too
        moved = [name for name in trained if name.startswith("stages.1.") and name in init]
        assert any(not np.array_equal(trained[name], init[name]) for name in moved)
        assert trained["classifier.weight"].shape == (3, init["classifier.weight"].shape[1])
    groups = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["optimizer"]["param_groups"]
    assert sorted({group["lr_scale"] for group in groups}) == [0.5, 1.0]  # stage 1 and the head; stem, stage 0 out
    assert all(
        group["lr"] == pytest.approx(groups[0]["lr"] / groups[0]["lr_scale"] * group["lr_scale"]) for group in groups
    )


def test_freeze_bn_keeps_every_statistic(setup: dict[str, Path], tmp_path: Path) -> None:
    specdsl.train(  # the top-level API mirrors the CLI: TrainOptions fields as keywords
        setup["spec"], tmp_path / "run", data=str(setup["data"]), recipe=RECIPE, threads=1, quiet=True,
        init=str(setup["init"]), freeze_bn=True,
    )  # fmt: skip
    init = weights.load(setup["init"], specdsl.load(setup["spec"]))
    tuned = specdsl.loads((tmp_path / "run" / "spec.spec").read_text(), "spec.spec")
    trained = weights.load(tmp_path / "run" / "checkpoint" / "weights.safetensors", tuned)
    statistics = [name for name in trained if name.endswith(("running_mean", "running_var"))]
    assert statistics and all(np.array_equal(trained[name], init[name]) for name in statistics)
    assert not np.array_equal(trained["stem.conv.weight"], init["stem.conv.weight"])


def test_a_stopped_fine_tuning_run_resumes_to_the_same_weights(setup: dict[str, Path], tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    train(setup["spec"], whole, options(setup, freeze="stages.0"))
    parts = tmp_path / "parts"
    train(setup["spec"], parts, options(setup, freeze="stages.0", stop_at_epoch=1))
    refused = run_cli("train", str(setup["spec"]), "-o", str(parts), "--resume", "--data", str(setup["data"]),
                      "--threads", "1", *(f"--set={k}={v}" for k, v in RECIPE.items()))  # fmt: skip
    assert refused.returncode == 2 and "differs from the run being resumed" in one_error_line(refused.stderr)
    train(setup["spec"], parts, options(setup, freeze="stages.0", resume=True))
    for name in ("weights.safetensors", "ema.safetensors"):
        assert (parts / "checkpoint" / name).read_bytes() == (whole / "checkpoint" / name).read_bytes()


def test_init_for_another_network_is_one_line_naming_the_tensor(setup: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    weights.save(weights.initial(specdsl.load("specs/digits_tiny.spec")), other)
    before = listing(tmp_path)
    done = run_cli("train", str(setup["spec"]), "-o", str(tmp_path / "run"), "--data", str(setup["data"]),
                   "--init", str(other), "--threads", "1")  # fmt: skip
    line = one_error_line(done.stderr)
    assert done.returncode == 2 and "does not fit digits-test" in line and "'stem.conv.weight'" in line
    assert listing(tmp_path) == before and not (tmp_path / "run").exists()
    for flag, value in (("--freeze", "stage1"), ("--lr-decay", "0"), ("--freeze", "stages.9")):
        done = run_cli("train", str(setup["spec"]), "-o", str(tmp_path / "run"), "--data", str(setup["data"]),
                       "--init", str(setup["init"]), flag, value)  # fmt: skip
        assert done.returncode == 2 and flag in one_error_line(done.stderr)
    assert listing(tmp_path) == before


@pytest.mark.slow
def test_fine_tuning_under_torchrun_keeps_replicas_identical(setup: dict[str, Path], tmp_path: Path) -> None:
    """``torchrun --nproc-per-node 2 -m specdsl train --init ... --freeze stages.0``: every rank loads the init,
    the replicas stay identical and the frozen layers bit-identical."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "specdsl", "train", str(setup["spec"]), "-o", str(tmp_path / "run"), "--data", str(setup["data"]),
               "--init", str(setup["init"]), "--freeze", "stages.0", "--threads", "1", "-q",
               *(f"--set={k}={v}" for k, v in RECIPE.items())]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [record["replica_max_difference"] for record in records] == [0.0] * RECIPE["epochs"]
    init = weights.load(setup["init"], specdsl.load(setup["spec"]))
    tuned = specdsl.loads((tmp_path / "run" / "spec.spec").read_text(), "spec.spec")
    trained = weights.load(tmp_path / "run" / "checkpoint" / "weights.safetensors", tuned)
    frozen = [name for name in trained if name.startswith(("stem.", "stages.0."))]
    assert frozen and all(np.array_equal(trained[name], init[name]) for name in frozen)


def test_fine_tuning_starts_from_the_init_and_the_rebuilt_head_from_the_shared_init(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    """At a vanishing learning rate (and BN statistics frozen) the trained weights are the ones it started from:
    every tensor but the classifier is the init file's, the rebuilt classifier ``weights.initial``'s at the seed."""
    recipe = {**RECIPE, "epochs": 1, "lr": 1e-30}
    train(setup["spec"], tmp_path / "run", dataclasses.replace(options(setup, freeze_bn=True, seed=4), recipe=recipe))
    init = weights.load(setup["init"], specdsl.load(setup["spec"]))
    tuned = specdsl.loads((tmp_path / "run" / "spec.spec").read_text(), "spec.spec")
    trained = weights.load(tmp_path / "run" / "checkpoint" / "weights.safetensors", tuned)
    fresh = weights.initial(tuned, seed=4)
    for name, value in trained.items():
        expected = fresh[name] if name.startswith("classifier.") else init[name]
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-20, err_msg=name)
