"""Regularisation stated once (`specdsl.passes.regularisation`): the drop rates a stage trains with, which tensors
weight decay reaches (CondConv kernels included)."""

from __future__ import annotations

import pytest

import specdsl
from specdsl.passes.regularisation import decayed_tensors, dropout_name, rates


@pytest.mark.parametrize("name", ["b0", "v2_s", "cc_b0_4e", "mobilenetv3_large_100"])
def test_the_spec_own_values_give_the_lowering_own_rates(name: str) -> None:
    """The rule resolve applies is the rule the trainer asks: with the spec's head dropout and drop-path setting
    it reproduces every dropout / drop-path op's rate bit for bit."""
    ir = specdsl.load(name)
    net = specdsl.lower(ir)
    own = {op.name: op.rate for op in net.ops if op.op in ("dropout", "drop_path")}
    found = rates(net, dropout=ir.head.dropout, drop_path=ir.spec.defaults.drop_path, total_blocks=len(ir.blocks))
    assert found == own and len(own) > 1
    assert dropout_name(net) == "head.dropout" and found["head.dropout"] == ir.head.dropout


def test_a_stage_rates_scale_every_block_from_the_lowering() -> None:
    ir = specdsl.load("v2_s")
    net = specdsl.lower(ir)
    stage = rates(net, dropout=0.25, drop_path=0.1, total_blocks=len(ir.blocks))
    by_name = {f"stages.{b.stage}.{b.index}.drop_path": b for b in ir.blocks if b.residual}
    assert stage["head.dropout"] == 0.25 and set(stage) == {"head.dropout", *by_name}
    assert all(stage[name] == 0.1 * block.global_index / len(ir.blocks) for name, block in by_name.items())


def test_weight_decay_reaches_every_kernel_and_condconv_experts() -> None:
    """CondConv kernels are decayed as google/automl decays every kernel; biases and BN parameters never are."""
    net = specdsl.lower(specdsl.load("cc_b0_4e"))
    decayed = decayed_tensors(net)
    tensors = net.tensors()
    experts = {f"{op.name}.weight" for op in net.ops if op.op == "cond_conv"}
    assert experts and experts <= decayed <= set(tensors)
    kernels = {f"{op.name}.weight" for op in net.ops if op.op in ("conv", "linear", "cond_conv")}
    assert decayed == kernels
    bn = {name for op in net.ops if op.op == "batch_norm" for name in op.tensors()}
    assert not decayed & bn and not any(name.endswith(".bias") for name in decayed)
