"""Round trips: ``.keras`` files under ``safe_mode=True``, SavedModels served by TensorFlow, canonical weights
written from Keras and read by PyTorch, and `specdsl build --backend keras` as a user runs it.

The network is the shared tiny spec (every op kind, SE, depthwise and residual blocks) with weights
calibrated so that every op's numbers matter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import numpy as np  # noqa: E402

import specdsl  # noqa: E402
from specdsl import weights  # noqa: E402
from specdsl.backends.keras import build, emit, state_of  # noqa: E402
from specdsl.cli.main import main  # noqa: E402
from specdsl.ir import ModelIR  # noqa: E402
from tests.conftest import TINY_SPEC, run_cli  # noqa: E402

from .helpers import CALIBRATION_BATCH, SIGNAL, TOLERANCE, calibrate, images, logits, max_diff  # noqa: E402


@pytest.fixture(scope="module")
def tiny() -> tuple[ModelIR, keras.Model, np.ndarray]:
    """The tiny network with calibrated weights, and two inputs whose logits depend on them."""
    ir = specdsl.loads(TINY_SPEC, "tiny.spec")
    model = build(ir, seed=5)
    x = images(CALIBRATION_BATCH, ir.resolution, seed=6)
    calibrate(model, 7, x)
    expected = logits(model, x[:2])
    assert max_diff(expected[0], expected[1]) > SIGNAL
    return ir, model, x[:2]


def test_keras_file_reloads_in_safe_mode_with_the_same_outputs(tiny, tmp_path: Path, keras_on_torch) -> None:
    """Stock layers only: no custom objects to register, nothing of specdsl needed to load, on either Keras backend."""
    _, model, x = tiny
    path = tmp_path / "tiny.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]
    assert np.array_equal(logits(reloaded, x), logits(model, x))
    ours, theirs = state_of(model), state_of(reloaded)
    assert all(np.array_equal(ours[name], theirs[name]) for name in ours)
    assert max_diff(keras_on_torch.logits_of_file(path, x), logits(model, x)) <= TOLERANCE  # written on TF


def test_saved_model_serves_the_same_outputs(tiny, tmp_path: Path) -> None:
    _, model, x = tiny
    model.export(tmp_path / "saved", format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # keep it: it owns the variables that serve() reads
    assert max_diff(loaded.serve(tf.constant(x)).numpy(), logits(model, x)) <= 1e-6


def test_weights_save_of_a_keras_model_loads_into_torch_exactly(tiny, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ir, model, x = tiny
    path = weights.save(model, tmp_path / "tiny.safetensors", ir=ir)
    canonical = state_of(model)
    loaded = specdsl.build(ir, backend="torch", weights=path).eval()
    torch_state = {k: v for k, v in loaded.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(torch_state) == set(canonical)
    assert all(np.array_equal(torch_state[name].numpy(), canonical[name]) for name in canonical)  # bit for bit
    with torch.no_grad():
        torch_logits = loaded(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).double().numpy()
    assert max_diff(torch_logits, logits(model, x)) <= TOLERANCE
    back = state_of(build(ir, weights=path))  # and into Keras again
    assert all(np.array_equal(back[name], canonical[name]) for name in canonical)


def test_emit_writes_the_keras_file(tiny, tmp_path: Path) -> None:
    ir, model, x = tiny
    written = emit(ir, tmp_path, weights=state_of(model))
    assert written == [tmp_path / "tiny.keras"] and list(tmp_path.iterdir()) == written
    assert np.array_equal(logits(keras.models.load_model(written[0], safe_mode=True), x), logits(model, x))


def test_cli_refuses_what_the_backend_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.spec"
    spec.write_text(TINY_SPEC)
    out = tmp_path / "out"
    for option, message in (("--export=pt2", "backend 'keras' cannot export 'pt2'; it exports: saved_model, tflite"),
                            ("--deploy", "error: the keras backend has no option --deploy")):  # fmt: skip
        assert main(["build", str(spec), "--backend", "keras", "-o", str(out), option]) == 2
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.spec"]  # nothing written, no staging left


def test_cli_build_with_weights_and_export(tiny, tmp_path: Path) -> None:
    """The real console entry point, in a subprocess."""
    ir, model, x = tiny
    spec = tmp_path / "tiny.spec"
    spec.write_text(TINY_SPEC)
    trained = weights.save(model, tmp_path / "trained.safetensors", ir=ir)
    out = tmp_path / "out"
    args = ("build", str(spec), "--backend", "keras", "-o", str(out), "--weights", str(trained))
    result = run_cli(*args, "--export", "saved_model")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["tiny.keras", "tiny_saved_model"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.spec", "trained.safetensors"]  # nothing else
    assert np.array_equal(logits(keras.models.load_model(out / "tiny.keras", safe_mode=True), x), logits(model, x))
    assert (out / "tiny_saved_model" / "saved_model.pb").is_file()
