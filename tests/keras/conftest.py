"""The Keras-on-PyTorch worker, shared by the tests that compare Keras backends (one process start per session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT


class KerasOnTorch:
    """A running `tests.keras.torch_worker`: Keras models on Keras's PyTorch backend."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.keras.torch_worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def logits(self, spec: Path, resolution: int | None, weights_path: Path, x: np.ndarray) -> np.ndarray:
        """The spec's Keras model (at ``resolution``) with the canonical weights at ``weights_path``, on ``x``."""
        return self._run({"spec": str(spec), "resolution": resolution, "weights": str(weights_path)}, x)

    def logits_of_file(self, path: Path, x: np.ndarray) -> np.ndarray:
        """The model in a ``.keras`` file, loaded with ``safe_mode=True``, on ``x``."""
        return self._run({"keras_file": str(path)}, x)

    def _run(self, request: dict[str, object], x: np.ndarray) -> np.ndarray:
        np.save(self.scratch / "x.npy", x)
        out = self.scratch / "out.npy"
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({**request, "x": str(self.scratch / "x.npy"), "out": str(out)}) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline().strip()
        assert reply == "ok torch", reply or "the worker died"
        return np.load(out).astype(np.float64)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="session")
def keras_on_torch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KerasOnTorch]:
    pytest.importorskip("torch")
    worker = KerasOnTorch(tmp_path_factory.mktemp("keras_on_torch"))
    yield worker
    worker.close()
