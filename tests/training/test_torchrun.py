"""``torchrun --nproc-per-node 2 -m specdsl train`` on CPU (gloo): identical replicas, and the loss curve and
weights of one process training the same global batches.

The recipe leaves out the regularisers that draw per-process random numbers (RandAugment, mixup, dropout,
drop-path): crops and flips are seeded per image and the DistributedSampler's shards together make the
one-process batch, so only floating-point summation order can differ between the two runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")
pytest.importorskip("sklearn")

import specdsl  # noqa: E402
from specdsl import weights as canonical  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

from .conftest import TRAIN_SPEC  # noqa: E402

DETERMINISTIC = (
    TRAIN_SPEC.replace("defaults { drop_path = 0.2", "defaults { drop_path = 0")
    .replace("head { channels = 32 classes = 10 }", "head { channels = 32 classes = 10 dropout = 0 }")
    .replace(
        "    randaug = 0.2 -> 0.6\n    mixup = 0 -> 0.4\n    dropout = 0.1 -> 0.3\n    drop_path = 0.05 -> 0.25\n", ""
    )
    .replace("epochs = 6", "epochs = 3")
    .replace("batch_size = 64", "batch_size = 32")
)


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_gloo_processes_train_like_one(tmp_path: Path) -> None:
    assert "randaug" not in DETERMINISTIC and "drop_path = 0 " in DETERMINISTIC
    spec = tmp_path / "ddp.spec"
    spec.write_text(DETERMINISTIC)
    train = ["-m", "specdsl", "train", str(spec), "--threads", "1", "-q"]
    run(sys.executable, *train, "-o", str(tmp_path / "one"), cwd=ROOT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = run(*torchrun, *train, "-o", str(tmp_path / "two"), cwd=ROOT)
    assert two.stdout.count("trained 3 epochs") == 1  # one writer: rank 0

    single, double = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    # Both ranks hold the same weights after every epoch (parameters and BN statistics, compared exactly).
    assert [record["replica_max_difference"] for record in double] == [0.0, 0.0, 0.0]
    # Same global batches, BN statistics over both ranks: the same loss curve and the same network.
    losses = np.array([[r["train_loss"] for r in records] for records in (single, double)])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)  # measured: ~1e-7
    assert losses[0, -1] < losses[0, 0]
    ir = specdsl.load(spec)
    one = canonical.load(tmp_path / "one" / "checkpoint" / "weights.safetensors", ir)
    both = canonical.load(tmp_path / "two" / "checkpoint" / "weights.safetensors", ir)
    worst = max(float(np.abs(both[k] - v).max() / max(np.abs(v).max(), 1e-3)) for k, v in one.items())
    assert worst < 1e-3, worst
    print(f"loss curves {losses.tolist()}; largest relative weight difference {worst:.2e}")
