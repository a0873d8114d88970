"""One canonical weight file, three frameworks: PyTorch (specdsl.build), Keras on TensorFlow and Keras on PyTorch
(a worker process, since Keras picks its backend once per process) give the same logits within 1e-4.

Weights (`canonical_file`): random BN affine parameters and conv biases, BN statistics calibrated
on image-like inputs, so every op's numbers matter and the logits depend on the input. B3 and V2-S
run at reduced resolutions (re-resolved specs: same weights, smaller feature maps) to keep CI time down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402

import specdsl  # noqa: E402
from specdsl import reference, weights  # noqa: E402
from specdsl.backends.keras import build  # noqa: E402
from specdsl.ir import ModelIR  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402
from tests.conftest import SPECS  # noqa: E402
from tests.strategies import network, spec_text  # noqa: E402
from tests.torch.helpers import calibrate_batch_norm, reference_init  # noqa: E402

from .conftest import KerasOnTorch  # noqa: E402
from .helpers import CALIBRATION_BATCH, SIGNAL, TOLERANCE, images, load_ir, logits, max_diff  # noqa: E402


@pytest.fixture(autouse=True)
def flush_denormals() -> Iterator[None]:
    """Random networks produce subnormal activations, several times slower in torch on CPU (~1e-38: no effect here)."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)  # torch's default


def canonical_file(ir: ModelIR, seed: int, path: Path) -> tuple[Path, np.ndarray]:
    """A canonical weight file for ``ir`` whose numbers all matter, and two NHWC inputs to compare on.

    Made with the PyTorch backend's test init (random BN affine parameters and conv biases, BN
    statistics calibrated on image-like inputs). The inputs are two of the calibration images,
    whose logits are O(1): statistics of 4 images do not generalise, and an unseen image can drive
    a deep random network's logits to 100, where float32 rounding alone exceeds 1e-4.
    """
    model = specdsl.build(ir, backend="torch", seed=seed)
    reference_init(model, seed + 1)
    x = images(CALIBRATION_BATCH, ir.resolution, seed + 2, ir.in_channels)
    calibrate_batch_norm(model, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    return weights.save(model, path, ir=ir), x[:2]


def three_frameworks(
    ir: ModelIR, spec: Path, resolution: int | None, path: Path, x: np.ndarray, worker: KerasOnTorch
) -> dict[str, np.ndarray]:
    """Logits of the canonical file at ``path`` loaded into each framework, for NHWC ``x``."""
    model = specdsl.build(ir, backend="torch", weights=path).eval()
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).double().numpy()
    return {
        "torch": torch_logits,
        "keras-tensorflow": logits(build(ir, weights=path), x),
        "keras-torch": worker.logits(spec, resolution, path, x),
    }


@pytest.mark.parametrize("name,resolution", [("b0", None), ("b3", 160), ("v2_b0", None), ("v2_s", 128)])
def test_one_weight_file_same_logits_in_torch_and_keras_on_both_backends(
    name: str, resolution: int | None, keras_on_torch: KerasOnTorch, tmp_path: Path
) -> None:
    ir = load_ir(name, resolution)
    path, x = canonical_file(ir, seed=60, path=tmp_path / "w.safetensors")
    results = three_frameworks(ir, SPECS / f"{name}.spec", resolution, path, x, keras_on_torch)
    assert max_diff(results["torch"][0], results["torch"][1]) > SIGNAL  # the logits depend on the input
    for framework in ("keras-tensorflow", "keras-torch"):
        assert max_diff(results[framework], results["torch"]) <= TOLERANCE, framework
    assert max_diff(results["keras-tensorflow"], results["keras-torch"]) <= TOLERANCE


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=network)
def test_random_networks_match_the_oracle_in_every_framework(
    net: dict, keras_on_torch: KerasOnTorch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    scratch = tmp_path_factory.mktemp("prop")
    spec = scratch / "prop.spec"
    spec.write_text(spec_text(net))
    ir = specdsl.load(spec)
    path, x = canonical_file(ir, seed=70, path=scratch / "w.safetensors")
    expected = reference.run(lower(ir), weights.load(path, ir), x.transpose(0, 3, 1, 2))
    for framework, actual in three_frameworks(ir, spec, None, path, x, keras_on_torch).items():
        assert max_diff(actual, expected) <= TOLERANCE, framework
