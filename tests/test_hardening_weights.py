"""Hardening of weights files: one reader for every backend; float dtypes cast, everything else refused, one line."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import specdsl
from specdsl import weights
from tests.conftest import TINY_SPEC, listing, one_error_line, run_cli, run_main

BACKENDS = ["torch", "onnx", "keras"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.spec"
    path.write_text(TINY_SPEC)
    return path


@pytest.fixture(scope="module")
def state(tiny: Path) -> dict[str, np.ndarray]:
    return weights.initial(specdsl.load(tiny), seed=3)


def _bfloat16_bytes(array: np.ndarray) -> np.ndarray:
    """float32 values as bfloat16 bit patterns (truncated), the way safetensors stores BF16."""
    return (np.ascontiguousarray(array, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _write_bfloat16(state: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """A BF16 safetensors file, written by hand (numpy has no bfloat16); returns the values it holds."""
    bits = {name: _bfloat16_bytes(value) for name, value in state.items()}
    header, offset = {}, 0
    for name, value in bits.items():
        header[name] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(value.tobytes() for value in bits.values()))
    return {name: (value.astype(np.uint32) << 16).view(np.float32) for name, value in bits.items()}


def _with(state: dict[str, np.ndarray], name: str, value: np.ndarray) -> dict[str, np.ndarray]:
    return {**state, name: value}


#: Damaged or hostile weights: (how the file is made, a fragment the one-line diagnostic must hold).
BAD: dict[str, tuple[Callable[[dict[str, np.ndarray], Path], None], str]] = {
    "int64": (
        lambda s, p: save_file(_with(s, "stem.conv.weight", s["stem.conv.weight"].astype(np.int64)), str(p)),
        "tensor 'stem.conv.weight' is int64",
    ),
    "bool": (
        lambda s, p: save_file(_with(s, "stem.bn.weight", s["stem.bn.weight"] > 0), str(p)),
        "tensor 'stem.bn.weight' is bool",
    ),
    "uint8": (
        lambda s, p: save_file(_with(s, "classifier.bias", s["classifier.bias"].astype(np.uint8)), str(p)),
        "tensor 'classifier.bias' is uint8",
    ),
    "nan": (
        lambda s, p: save_file(_with(s, "stem.bn.bias", np.full_like(s["stem.bn.bias"], np.nan)), str(p)),
        "tensor 'stem.bn.bias' holds 16 non-finite value(s) (nan)",
    ),
    "inf": (
        lambda s, p: save_file(_with(s, "classifier.weight", s["classifier.weight"] * np.inf), str(p)),
        "tensor 'classifier.weight' holds",
    ),
    "negative variance": (
        lambda s, p: save_file(_with(s, "stem.bn.running_var", -s["stem.bn.running_var"]), str(p)),
        "tensor 'stem.bn.running_var' holds a negative variance (-1)",
    ),
    "empty": (lambda s, p: p.write_bytes(b""), "not a safetensors file: 0 bytes (empty or truncated)"),
    "text": (lambda s, p: p.write_text("these are not weights\n"), "not a safetensors file"),
    "pickle": (lambda s, p: p.write_bytes(pickle.dumps(s)), "not a safetensors file"),
    "header bomb": (
        lambda s, p: p.write_bytes((2**62).to_bytes(8, "little") + b"{}"),
        "declares a 4,611,686,018,427,387,904-byte header",
    ),
    "truncated": (
        lambda s, p: (save_file(s, str(p)), p.write_bytes(p.read_bytes()[:-100])),
        "(truncated or damaged)",
    ),
    "truncated header": (lambda s, p: (save_file(s, str(p)), p.write_bytes(p.read_bytes()[:50])), "-byte header"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_weights_are_one_line_for_every_backend(
    case: str, backend: str, tiny: Path, state: dict[str, np.ndarray], tmp_path: Path
) -> None:
    pytest.importorskip({"torch": "torch", "onnx": "onnxruntime", "keras": "keras"}[backend])
    make, fragment = BAD[case]
    path = tmp_path / "w.safetensors"
    make(state, path)
    out = tmp_path / "out"
    before = listing(tmp_path)
    code, _, stderr = run_main("build", str(tiny), "--backend", backend, "-o", str(out), "--weights", str(path))
    assert code == 2
    line = one_error_line(stderr)
    assert line.startswith(f"{path}: error: ") and fragment in line, line
    assert listing(tmp_path) == before and not out.exists()
    with pytest.raises(weights.WeightsError) as raised:  # the API: the same reader, the same message
        specdsl.build(specdsl.load(tiny), backend=backend, weights=path)
    assert fragment in str(raised.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_float_dtype_loads_and_is_cast(backend: str, tiny: Path, state: dict[str, np.ndarray], tmp_path: Path):
    pytest.importorskip({"torch": "torch", "onnx": "onnxruntime", "keras": "keras"}[backend])
    ir = specdsl.load(tiny)
    expected = _write_bfloat16(state, tmp_path / "bf16.safetensors")
    loaded = weights.load(tmp_path / "bf16.safetensors", ir)
    assert all(loaded[name].dtype == np.float32 and np.array_equal(loaded[name], expected[name]) for name in state)
    for dtype in ("float16", "float64"):
        save_file({name: value.astype(dtype) for name, value in state.items()}, str(tmp_path / f"{dtype}.safetensors"))
    for name in ("bf16", "float16", "float64"):
        path = tmp_path / f"{name}.safetensors"
        out = str(tmp_path / name)
        code, _, stderr = run_main("build", str(tiny), "--backend", backend, "-o", out, "--weights", str(path))
        assert code == 0, stderr
        specdsl.build(ir, backend=backend, weights=path)
        specdsl.build(ir, backend=backend, weights=weights.load(path, ir))


def test_bfloat16_from_torch_is_the_same_as_from_a_file(tiny: Path, state: dict[str, np.ndarray], tmp_path: Path):
    torch = pytest.importorskip("torch")
    ir = specdsl.load(tiny)
    from safetensors.torch import save_file as save_torch

    tensors = {name: torch.from_numpy(value).bfloat16() for name, value in state.items()}
    save_torch(tensors, str(tmp_path / "bf16.safetensors"))  # safetensors' own BF16 file
    expected = {name: value.float().numpy() for name, value in tensors.items()}
    model = specdsl.build(ir, backend="torch", weights=tensors)
    from_file = specdsl.build(ir, backend="torch", weights=tmp_path / "bf16.safetensors")
    for name, value in model.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(value, from_file.state_dict()[name]) and np.array_equal(value.numpy(), expected[name])
    with pytest.raises(weights.WeightsError, match=r"tensor 'stem\.conv\.weight' is int64"):
        specdsl.build(ir, backend="onnx", weights={**tensors, "stem.conv.weight": torch.zeros(16, 3, 3, 3).long()})


def test_a_fifo_is_refused_without_blocking(tiny: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "w.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(weights.WeightsError, match="not a regular file"):
        weights.load(fifo, specdsl.load(tiny))


def test_the_cli_reads_bad_weights_in_a_fresh_process(tiny: Path, state: dict[str, np.ndarray], tmp_path: Path):
    """The console script itself, once per backend: one line, exit 2, nothing written."""
    path = tmp_path / "w.safetensors"
    BAD["nan"][0](state, path)
    for backend in BACKENDS:
        result = run_cli("build", str(tiny), "--backend", backend, "-o", str(tmp_path / "out"), "--weights", str(path))
        assert result.returncode == 2
        # TensorFlow's own start-up log lines (absl, oneDNN) may precede the diagnostic for keras: not ours to judge
        stderr = result.stderr if backend != "keras" else "\n".join(_specdsl_lines(result.stderr))
        assert "tensor 'stem.bn.bias' holds 16 non-finite value(s)" in one_error_line(stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def _specdsl_lines(stderr: str) -> list[str]:
    """stderr without TensorFlow's C++ log lines (``I0000 ...``, ``W0000 ...``) and absl's notice."""
    noise = ("I0000 ", "W0000 ", "E0000 ", "WARNING: All log messages", "To enable the following instructions")
    return [line for line in stderr.splitlines() if not line.startswith(noise)]


@pytest.mark.parametrize("case", ["int64", "nan", "negative variance", "empty", "header bomb", "truncated", "pickle"])
def test_the_emitted_standalone_model_refuses_bad_weights(
    case: str, tiny: Path, state: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """The emitted ``<name>.py`` reads weights with torch alone: the same refusals, as a ValueError naming them."""
    pytest.importorskip("torch")
    import importlib.util

    out = tmp_path / "out"
    code, _, stderr = run_main("build", str(tiny), "--backend", "torch", "-o", str(out))
    assert code == 0, stderr
    module_spec = importlib.util.spec_from_file_location("tiny_standalone", out / "tiny.py")
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    module.load_model()  # its own weights load
    path = tmp_path / "w.safetensors"
    BAD[case][0](state, path)
    with pytest.raises(ValueError) as raised:
        module.load_model(path)
    message = str(raised.value)
    assert "\n" not in message
    assert str(path) in message or "tensor '" in message


def test_batch_counters_in_a_torch_state_dict_file_are_skipped(tiny: Path, state: dict[str, np.ndarray], tmp_path):
    """`safetensors.torch.save_file(model.state_dict())` holds int64 num_batches_tracked: not canonical, not read."""
    counters = {
        f"{name[: -len('.running_var')]}.num_batches_tracked": np.array(7) for name in state if "running_var" in name
    }
    save_file({**state, **counters}, str(tmp_path / "w.safetensors"))
    loaded = weights.load(tmp_path / "w.safetensors", specdsl.load(tiny))
    assert set(loaded) == set(state) and all(np.array_equal(loaded[name], state[name]) for name in state)
