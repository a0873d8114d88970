"""`specdsl build --backend onnx` as a user meets it: the file, its options, atomic output, l2's external data."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import onnx
import pytest

from specdsl import weights
from tests.calibrated import images
from tests.conftest import SPECS, run_cli

from .helpers import load_ir, logits


def test_build_writes_one_onnx_file(tmp_path: Path) -> None:
    out = tmp_path / "v2"
    result = run_cli("build", "v2_b0", "--backend", "onnx", "-o", str(out), "--opset", "20", "--keep-bn")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(f"wrote {out / 'efficientnetv2_b0.onnx'}")
    assert [p.name for p in out.iterdir()] == ["efficientnetv2_b0.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v2"]  # nothing else touched, no staging left
    model = onnx.load(str(out / "efficientnetv2_b0.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 20
    assert "BatchNormalization" in {node.op_type for node in model.graph.node}


def test_build_loads_canonical_weights(tmp_path: Path) -> None:
    ir = load_ir("b0")
    state = weights.initial(ir, seed=7)
    path = weights.save(state, tmp_path / "b0.safetensors", ir=ir)
    out = tmp_path / "b0"
    result = run_cli("build", "b0", "--backend", "onnx", "-o", str(out), "--weights", str(path), "--dtype", "float16")
    assert result.returncode == 0, result.stderr
    from specdsl.backends.onnx import build

    x = images(1, 224, seed=1)
    expected = logits(build(ir, weights=state), x)  # float32, from the same file's tensors
    assert np.abs(logits(out / "efficientnet_b0.onnx", x) - expected).max() < 0.02 * np.abs(expected).max()
    assert onnx.load(str(out / "efficientnet_b0.onnx")).graph.initializer[0].data_type == onnx.TensorProto.FLOAT16


def test_options_a_backend_lacks_are_refused(tmp_path: Path) -> None:
    cases = [
        (["--backend", "onnx", "--deploy"], "the onnx backend has no option --deploy"),
        (["--backend", "onnx", "--export", "pt2"], "the onnx backend has no option --export"),
        (
            ["--backend", "torch", "--keep-bn", "--dtype", "float16"],
            "the torch backend has no option --dtype, --keep-bn",
        ),
    ]
    for args, message in cases:
        result = run_cli("build", str(SPECS / "b0.spec"), *args, "-o", str(tmp_path / "out"))
        assert result.returncode == 2 and result.stderr.strip() == f"error: {message}"
    result = run_cli("build", "b0", "--backend", "onnx", "--opset", "16", "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "invalid choice: 16" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_l2_uses_external_data_and_loads_in_onnxruntime(tmp_path: Path) -> None:
    """l2's 1.92 GB of folded float32 weights go to an external data file (EXTERNAL_DATA_BYTES); onnxruntime
    opens the pair. Built by the CLI from the seeded init, so it is the file a user gets (about 3.6 GB peak)."""
    from specdsl.backends.onnx import session

    out = tmp_path / "l2"
    result = run_cli("build", "l2", "--backend", "onnx", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 6 * 2**20  # KiB: the build stayed under 6 GiB
    model_path, data_path = out / "efficientnet_l2.onnx", out / "efficientnet_l2.onnx.data"
    assert sorted(p.name for p in out.iterdir()) == [model_path.name, data_path.name]
    assert model_path.stat().st_size < 1_000_000 and data_path.stat().st_size > 1.9e9
    model = onnx.load(str(model_path), load_external_data=False)
    inline = [tensor for tensor in model.graph.initializer if tensor.data_location != onnx.TensorProto.EXTERNAL]
    assert sum(len(tensor.raw_data) for tensor in inline) < 100_000  # only tensors under onnx_ir's 256-byte threshold
    onnx.checker.check_model(str(model_path), full_check=True)
    inputs = session(model_path, threads=2, level="basic").get_inputs()
    assert [(i.name, i.shape) for i in inputs] == [("input", ["batch", 3, 800, 800])]
