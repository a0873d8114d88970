"""One initialisation, one BN fold and one way to run at another input size for every backend (issue #21):
``build(ir, seed=s)`` assigns `specdsl.weights.initial(ir, s)` on torch, Keras and ONNX alike; the standalone torch
file's own init rule and BN fold (it imports only torch) agree with `specdsl.weights`'s, tensor by tensor; at an input
size the network was not lowered for, every backend computes what the oracle computes on the lowering at that size."""

from __future__ import annotations

import numpy as np
import pytest

import specdsl
from specdsl import reference, weights
from specdsl.passes.lower import lower
from tests.calibrated import images, random_weights
from tests.conftest import TINY_SPEC

torch = pytest.importorskip("torch")
from specdsl.backends.torch.layers import EfficientNet, fold_batch_norm  # noqa: E402

#: MixNet's split convs (mixed kernels, grouped 1x1 expansion and projection), TF SAME padding.
TINY_MIXNET = """\
name = "tiny-mixnet"
dialect = timm
input { resolution = 32 }
stem { channels = 8 }
stages {
    ds_r1_k3_s1_e1_c8
    ir_r1_k3.5_a1.1_p1.1_s2_e3_c16_se0.5_nsw
}
head { channels = 32 classes = 10 }
defaults { padding = same }
"""

#: CondConv: routed expansion, depthwise and projection convs; TF SAME padding.
TINY_CONDCONV = """\
name = "tiny-condconv"
dialect = timm
input { resolution = 32 }
stem { channels = 8 }
stages {
    ds_r1_k3_s1_e1_c8
    ir_r1_k3_s2_e4_c16_se0.25_cc4
}
head { channels = 32 classes = 10 }
defaults { padding = same }
"""

SPECS = {"tiny": TINY_SPEC, "mixnet": TINY_MIXNET, "condconv": TINY_CONDCONV}


def _ir(name: str) -> specdsl.ModelIR:
    return specdsl.loads(SPECS[name], f"{name}.spec")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_backend_builds_the_same_initial_network(name: str) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("keras")
    from specdsl.backends.keras.weights import state_of as keras_state
    from tests.onnx.helpers import logits as onnx_logits

    ir, seed = _ir(name), 5
    initial = weights.initial(ir, seed)
    x = images(2, ir.resolution, seed=9, channels=ir.in_channels)
    expected = reference.run(lower(ir), initial, x)

    torch_model = specdsl.build(ir, backend="torch", seed=seed).eval()
    keras_model = specdsl.build(ir, backend="keras", seed=seed)
    for state in (weights.state_of(torch_model), keras_state(keras_model)):
        assert list(state) == list(initial) and all(np.array_equal(state[k], initial[k]) for k in initial)

    with torch.no_grad():
        from_torch = torch_model(torch.from_numpy(x)).numpy()
    from_keras = np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=False))
    from_onnx = onnx_logits(specdsl.build(ir, backend="onnx", seed=seed), x)
    assert np.abs(expected).max() > 0  # the oracle's logits are not trivially zero
    for actual in (from_torch, from_keras, from_onnx):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_standalone_init_rule_is_the_shared_one(name: str) -> None:
    """The rule `EfficientNet.reset_parameters` draws (the emitted file's init without weights) is
    `weights.init_rule`, tensor for tensor: same names, distributions and scales."""
    net = lower(_ir(name))
    with torch.device("meta"):
        model = EfficientNet(net.to_json())
    shared = {name: (rule.distribution, rule.scale) for name, rule in weights.init_rule(net).items()}
    assert model.init_rule() == shared
    assert set(shared) == set(net.tensors())
    model = model.to_empty(device="cpu")
    model.reset_parameters(3)
    state = model.state_dict()
    for tensor_name, (distribution, scale) in shared.items():
        tensor = state[tensor_name]
        if distribution == "uniform":
            assert tensor.abs().max() <= scale
        elif distribution in ("ones", "zeros"):
            assert torch.all(tensor == (1.0 if distribution == "ones" else 0.0))


@pytest.mark.parametrize("name", ["tiny", "condconv"])
def test_standalone_fold_is_the_shared_one_bit_for_bit(name: str) -> None:
    """The torch fold (the standalone file's, for ``fuse()`` without specdsl) gives the very bits of
    `weights.fold_batch_norm` on BN statistics that matter."""
    ir = _ir(name)
    net = lower(ir)
    state = random_weights(ir, seed=4)
    shared = weights.fold_batch_norm(net, state)
    tensors = {key: torch.from_numpy(value) for key, value in state.items()}
    with torch.device("meta"):
        model = EfficientNet(net.to_json())
    model = model.to_empty(device="cpu")
    model.load_state_dict(tensors, strict=False)
    folded = [op for op in net.ops if getattr(op, "folds_into", None)]
    assert folded
    for op in folded:
        conv = model.get_submodule(op.folds_into)
        fold_batch_norm(conv, model.get_submodule(op.name))
        for suffix in ("weight", "bias"):
            assert np.array_equal(getattr(conv, suffix).detach().numpy(), shared[f"{op.folds_into}.{suffix}"])
    deployed = specdsl.build(ir, backend="torch", weights=state, deploy=True)
    fused = EfficientNet(net.to_json())
    fused.load_state_dict(tensors, strict=False)
    fused.fuse()
    assert all(
        torch.equal(a, b) for a, b in zip(deployed.state_dict().values(), fused.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_backend_runs_another_input_size_as_the_lowering_at_that_size(name: str) -> None:
    """torch at run time, ONNX ``dynamic_size`` and Keras ``resolution=`` from the one lowering (TF SAME for the
    ``dynamic_padding`` convs, im2col CondConv and split convs included) equal the oracle on a re-resolved lowering."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("keras")
    from specdsl.api import at_resolution
    from tests.onnx.helpers import logits as onnx_logits

    ir, size = _ir(name), 37  # odd: SAME pads other than the lowering's
    state = random_weights(ir, seed=6)
    x = images(2, size, seed=7, channels=ir.in_channels)
    expected = reference.run(lower(at_resolution(ir, size)), state, x)
    with torch.no_grad():
        from_torch = specdsl.build(ir, backend="torch", weights=state).eval()(torch.from_numpy(x)).numpy()
    from_onnx = onnx_logits(specdsl.build(ir, backend="onnx", weights=state, dynamic_size=True), x)
    keras_model = specdsl.build(ir, backend="keras", weights=state, resolution=size)
    from_keras = np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=False))
    assert keras_model.preprocessing["preprocessing.resolution"] == str(size)
    assert np.abs(expected[0] - expected[1]).max() > 0.1 * np.abs(expected).max()  # the logits depend on the input
    for actual in (from_torch, from_onnx, from_keras):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
