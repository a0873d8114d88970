"""TensorFlow's RMSProp against steps computed by hand, and which tensors get weight decay."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import specdsl  # noqa: E402
from specdsl.backends.torch import build  # noqa: E402
from specdsl.passes.regularisation import decayed_tensors  # noqa: E402
from specdsl.spec import TrainingRecipe  # noqa: E402
from specdsl.training.optim import RMSpropTF, build_optimizer  # noqa: E402
from tests.conftest import TINY_SPEC  # noqa: E402


def tf_rmsprop_by_hand(p: float, grads: list[float], lr: float, decay: float, momentum: float, eps: float, wd: float):
    """tf.compat.v1.train.RMSPropOptimizer's update written out in plain floats (ms starts at 1)."""
    ms, mom = 1.0, 0.0
    for g in grads:
        g = g + wd * p
        ms = decay * ms + (1.0 - decay) * g * g
        mom = momentum * mom + lr * g / math.sqrt(ms + eps)
        p = p - mom
    return p, ms, mom


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_rmsprop_tf_matches_hand_computed_steps(wd: float) -> None:
    grads = [0.5, -0.25, 2.0]
    param = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimizer = RMSpropTF([param], lr=0.1, decay=0.9, momentum=0.9, eps=1e-3, weight_decay=wd)
    for grad in grads:
        param.grad = torch.tensor([grad], dtype=torch.float64)
        optimizer.step()
    p, ms, mom = tf_rmsprop_by_hand(1.0, grads, 0.1, 0.9, 0.9, 1e-3, wd)
    state = optimizer.state[param]
    assert param.item() == pytest.approx(p, rel=1e-15, abs=1e-15)
    assert state["square_avg"].item() == pytest.approx(ms, rel=1e-15)
    assert state["momentum_buffer"].item() == pytest.approx(mom, rel=1e-15)
    # First step by hand: ms = 0.9 + 0.1 * 0.25 = 0.925, step = 0.1 * 0.5 / sqrt(0.926).
    first = RMSpropTF([q := torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))], lr=0.1)
    q.grad = torch.tensor([0.5], dtype=torch.float64)
    first.step()
    assert q.item() == pytest.approx(1.0 - 0.05 / math.sqrt(0.926), rel=1e-15)


def test_torch_rmsprop_is_not_the_tf_form() -> None:
    """Why RMSpropTF exists: PyTorch's first step divides by sqrt(0.1 * g^2) + eps, about 3x larger here."""
    param = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimizer = torch.optim.RMSprop([param], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    param.grad = torch.tensor([0.5], dtype=torch.float64)
    optimizer.step()
    assert 1.0 - param.item() == pytest.approx(0.1 * 0.5 / (math.sqrt(0.1 * 0.25) + 1e-3), rel=1e-12)
    assert 1.0 - param.item() > 3 * 0.05 / math.sqrt(0.926)


@pytest.mark.parametrize("name", ["rmsprop_tf", "sgd", "adamw"])
def test_weight_decay_reaches_conv_and_linear_weights_only(name: str) -> None:
    ir = specdsl.loads(TINY_SPEC)
    model = build(ir, seed=0)
    recipe = TrainingRecipe(optimizer=name, weight_decay=0.5)
    optimizer = build_optimizer(model, specdsl.lower(ir), recipe)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] for p in g["params"]}
    assert decayed == decayed_tensors(specdsl.lower(ir))
    assert decayed and all(n.endswith(".conv.weight") or n == "classifier.weight" or ".se." in n for n in decayed)
    assert not any(".bn." in n or n.endswith(".bias") for n in decayed)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(names)


def test_condconv_expert_kernels_reach_the_optimizer_decayed() -> None:
    """The lowering's CondConv kernels are the model's parameters of those names, so decay reaches them."""
    ir = specdsl.load("cc_b0_4e")
    model = specdsl.build(ir, device="meta")
    net = specdsl.lower(ir)
    optimizer = build_optimizer(model, net, TrainingRecipe(weight_decay=0.5))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] for p in g["params"]}
    experts = {f"{op.name}.weight" for op in net.ops if op.op == "cond_conv"}
    assert len(experts) == 24 and experts <= decayed == decayed_tensors(net)
