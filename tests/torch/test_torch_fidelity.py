"""Same weights, same logits as the reference implementations: efficientnet-pytorch (V1) and keras.applications (V2).

References get a seeded random init and BN statistics calibrated on image-like inputs, so the
logits are O(1) and depend strongly on the input; each test also checks a negative control
(the same weights with symmetric padding) to show the tolerance could catch a real difference.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from specdsl import weights  # noqa: E402
from specdsl.backends.torch import build  # noqa: E402
from specdsl.interop import efficientnet_pytorch, keras_applications  # noqa: E402
from specdsl.ir import ModelIR  # noqa: E402

from .helpers import calibrate_batch_norm, flush_denormals, images, load_ir, reference_init  # noqa: E402, F401

TOLERANCE = 1e-4
CALIBRATION_BATCH = 4
SIGNAL = 100 * TOLERANCE  # differences that matter are at least this large


def assert_faithful(ir: ModelIR, state: dict[str, torch.Tensor], x: torch.Tensor, expected: torch.Tensor) -> None:
    """Our model with ``state`` reproduces ``expected``; the input matters and so does the padding."""
    assert (expected[0] - expected[1]).abs().max() > SIGNAL  # logits depend on the input
    model = build(ir, weights=state).eval()
    with torch.no_grad():
        assert (model(x) - expected).abs().max() <= TOLERANCE
        symmetric = build(ir.model_copy(update={"padding": "symmetric"}), weights=state).eval()
        assert (symmetric(x) - expected).abs().max() > SIGNAL


def efficientnet_pytorch_reference(variant: str, seed: int, *, calibrate: bool = True) -> torch.nn.Module:
    ep = pytest.importorskip("efficientnet_pytorch")
    ref = ep.EfficientNet.from_name(f"efficientnet-{variant}")  # static SAME padding for its image size
    ref.set_swish(memory_efficient=False)
    reference_init(ref, seed)
    if calibrate:
        calibrate_batch_norm(ref, images(CALIBRATION_BATCH, ref._global_params.image_size, seed + 1))
    return ref.eval()


@pytest.mark.parametrize("variant", ["b0", "b3"])
def test_matches_efficientnet_pytorch(variant: str) -> None:
    ir = load_ir(variant)
    ref = efficientnet_pytorch_reference(variant, seed=10)
    x = images(2, ir.resolution, seed=11)
    with torch.no_grad():
        expected = ref(x)
    state = efficientnet_pytorch.import_weights(ref, ir)
    assert_faithful(ir, state, x, expected)
    with torch.no_grad():  # same torch kernels in the same order: not just close, identical
        assert torch.equal(build(ir, weights=state).eval()(x), expected)


def test_matches_efficientnet_pytorch_dynamic_padding_on_other_sizes() -> None:
    """An input size the IR did not predict takes the dynamic-padding path: still TF SAME."""
    ir = load_ir("b0")
    ref = efficientnet_pytorch_reference("b0", seed=20)
    state = efficientnet_pytorch.import_weights(ref, ir)
    ep = pytest.importorskip("efficientnet_pytorch")
    dynamic = ep.EfficientNet.from_name("efficientnet-b0", image_size=None)  # dynamic SAME padding
    dynamic.set_swish(memory_efficient=False)
    dynamic.load_state_dict(ref.state_dict())
    dynamic.eval()
    x = torch.nn.functional.interpolate(images(2, 224, seed=21), size=(200, 172), mode="bilinear")
    with torch.no_grad():
        expected = dynamic(x)
    assert_faithful(ir, state, x, expected)


def test_efficientnet_pytorch_import_rejects_the_wrong_variant() -> None:
    ref = efficientnet_pytorch_reference("b0", seed=0, calibrate=False)
    with pytest.raises(weights.WeightsError, match=r"'_conv_stem.weight'.*\(32, 3, 3, 3\).*'stem.conv.weight'"):
        efficientnet_pytorch.import_weights(ref, load_ir("b3"))
    with pytest.raises(weights.WeightsError, match="MBConv blocks only"):
        efficientnet_pytorch.import_weights(ref, load_ir("v2_b0"))
    deeper = efficientnet_pytorch_reference("b1", seed=0, calibrate=False)  # b0's widths, more blocks
    with pytest.raises(weights.WeightsError, match=r"no '_blocks.1._expand_conv.weight' for 'stages.1.0.expand"):
        efficientnet_pytorch.import_weights(deeper, load_ir("b0"))


def test_efficientnet_pytorch_import_rejects_unclaimed_tensors() -> None:
    ref = efficientnet_pytorch_reference("b0", seed=0, calibrate=False)
    ref.register_buffer("extra", torch.zeros(3))
    with pytest.raises(weights.WeightsError, match=r"1 of its tensors have no place in the network, first 'extra'"):
        efficientnet_pytorch.import_weights(ref, load_ir("b0"))


# --- keras.applications EfficientNetV2 --------------------------------------------------------


def keras_reference(constructor: str, seed: int, calibration_size: int | None):  # -> (keras model, its core)
    """A seeded keras.applications model with BN statistics calibrated on image-like inputs (tests/keras/helpers)."""
    pytest.importorskip("keras")
    from tests.keras import helpers

    calibration = None
    if calibration_size is not None:
        calibration = images(CALIBRATION_BATCH, calibration_size, seed + 1).permute(0, 2, 3, 1).numpy()
    return helpers.keras_reference(constructor, seed, calibration)


def check_keras(constructor: str, spec: str) -> None:
    import numpy as np

    ir = load_ir(spec)
    model, core = keras_reference(constructor, seed=30, calibration_size=ir.resolution)
    x = images(2, ir.resolution, seed=31)
    expected = torch.from_numpy(np.array(core(x.permute(0, 2, 3, 1).numpy(), training=False)))
    assert_faithful(ir, keras_applications.import_weights(model, ir), x, expected)


def test_matches_keras_efficientnetv2_b0() -> None:
    check_keras("EfficientNetV2B0", "v2_b0")


@pytest.mark.slow
def test_matches_keras_efficientnetv2_s() -> None:
    check_keras("EfficientNetV2S", "v2_s")


def test_matches_keras_efficientnet_b0() -> None:
    """Keras V1 names its depthwise conv `dwconv` and pads explicitly; same numbers all the same."""
    check_keras("EfficientNetB0", "b0")


def test_keras_import_rejects_the_wrong_variant() -> None:
    reference, _ = keras_reference("EfficientNetV2B0", seed=0, calibration_size=None)
    with pytest.raises(weights.WeightsError, match=r"'stem_conv/kernel'.*\(32, 3, 3, 3\).*'stem.conv.weight'"):
        keras_applications.import_weights(reference, load_ir("v2_s"))
    with pytest.raises(weights.WeightsError, match=r"no 'block1a_dwconv2/kernel' for 'stages.0.0.spatial.conv"):
        keras_applications.import_weights(reference, load_ir("b0"))
