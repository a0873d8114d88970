"""`specdsl.weights.save` writes the same bytes for the same tensors and metadata, in any process: the safetensors
library keeps metadata in a hash map seeded per process, so its files with several metadata keys differed. The
header is written by specdsl (keys sorted, the library's tensor order and 8-byte alignment); every reader reads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import specdsl
from specdsl import weights
from tests.conftest import ROOT, TINY_SPEC

METADATA = {"source.format": "timm", "preprocessing.mean": "[0.485, 0.456, 0.406]", "head": "imported", "z": "é \n"}
SAVE = """
import sys
import numpy as np
from specdsl import weights
state = {f"t{i}": np.arange(i + 1, dtype=np.float32) for i in range(12)} | {"half": np.ones(3, np.float16)}
weights.save(state, sys.argv[1], metadata={f"key{n}": value for n, value in enumerate("metadata!")})
"""


def test_two_processes_write_the_same_bytes(tmp_path: Path) -> None:
    paths = [tmp_path / f"{n}.safetensors" for n in range(2)]
    for path in paths:
        subprocess.run([sys.executable, "-c", SAVE, str(path)], cwd=ROOT, check=True)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_the_file_is_the_librarys_and_every_reader_reads_it(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors")
    from safetensors.numpy import load_file
    from safetensors.numpy import save as library_save

    ir = specdsl.loads(TINY_SPEC, "tiny.spec")
    state = weights.initial(ir, seed=2)
    plain, labelled = tmp_path / "plain.safetensors", tmp_path / "labelled.safetensors"
    weights.save(state, plain, ir=ir)
    assert plain.read_bytes() == library_save(state, metadata={"format": weights.FORMAT})  # one key: no order to pick
    weights.save(state, labelled, ir=ir, metadata=METADATA)
    with safetensors.safe_open(labelled, "numpy") as file:
        assert file.metadata() == {"format": weights.FORMAT, **METADATA}
    for read in (load_file(labelled), weights.load(labelled, ir)):
        assert all(np.array_equal(read[name], state[name]) for name in state) and read.keys() == state.keys()
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file as torch_load_file

    from specdsl.backends.torch.layers import read_safetensors

    for read in (torch_load_file(labelled), read_safetensors(labelled)):
        assert read.keys() == state.keys()
        assert all(torch.equal(read[name], torch.from_numpy(state[name])) for name in state)
