"""One lowering per IR (#21): resolve's memory check, the analysis and the backends read the same one, and an IR
that is copied or changed in place is never handed a lowering of what it was."""

from __future__ import annotations

import copy
import math
import pickle

import pytest

import specdsl
from specdsl.errors import SpecError
from specdsl.ir import ModelIR
from specdsl.passes import lower as lowering
from specdsl.passes.lower import lower, lower_for_build
from tests.conftest import TINY_SPEC


@pytest.fixture
def lowered(monkeypatch: pytest.MonkeyPatch) -> list[ModelIR]:
    """The IRs whole networks are lowered for, one entry per lowering."""
    calls: list[ModelIR] = []
    real = lowering._network

    def counted(ir: ModelIR) -> lowering.LoweredNetwork:
        calls.append(ir)
        return real(ir)

    monkeypatch.setattr(lowering, "_network", counted)
    return calls


def test_load_analyze_and_a_backend_share_one_lowering(lowered: list[ModelIR]) -> None:
    ir = specdsl.loads(TINY_SPEC)  # resolve lowers it for the memory check
    report = specdsl.analyze(ir)
    net = lower(ir)
    assert lower_for_build(ir) is net and lower(ir) is net
    assert specdsl.weights.canonical_shapes(ir) == net.tensors()
    strides = lower(ir, features="strides", out_indices=[-1])
    assert lower(ir, features="strides", out_indices=(-1,)) is strides  # a list and a tuple select alike
    assert strides.ops == net.ops[: len(strides.ops)]
    assert lowered == [ir]
    assert report.params == specdsl.analyze(ir, features="strides").params + report.head.params


def test_a_torch_build_reuses_the_lowering(lowered: list[ModelIR]) -> None:
    pytest.importorskip("torch")
    ir = specdsl.loads(TINY_SPEC)
    specdsl.build(ir, "torch")
    assert lowered == [ir]


def test_a_copy_or_an_in_place_change_is_lowered_again(lowered: list[ModelIR]) -> None:
    ir = specdsl.loads(TINY_SPEC)
    net = lower(ir)
    symmetric = ir.model_copy(update={"padding": "symmetric"})  # pydantic copies private attributes
    assert lower(symmetric) != net and lower(ir) is net
    assert lower(copy.deepcopy(ir)) == net and lower(pickle.loads(pickle.dumps(ir))) == net
    assert len(lowered) == 4
    assert ir == specdsl.loads(TINY_SPEC)  # what is kept on an IR is not part of its value

    blocks = ir.stages[1].blocks  # frozen models, but lists: changeable in place
    blocks[1] = blocks[1].model_copy(update={"drop_path": 0.5})
    assert lower(ir).ops != net.ops
    assert next(op.rate for op in lower(ir).ops if op.name == "stages.1.1.drop_path") == 0.5
    params = specdsl.analyze(ir).params
    blocks.pop()
    assert specdsl.analyze(ir).params < params  # the footprint follows the lowering
    assert lower(ir).ops[-1] == net.ops[-1] and len(lower(ir).ops) < len(net.ops)


def test_a_selection_is_cached_only_as_given(lowered: list[ModelIR]) -> None:
    ir = specdsl.loads(TINY_SPEC)
    lower(ir, features="strides", out_indices=[1])
    with pytest.raises(SpecError, match="out_indices"):  # True == 1, but it is no index
        lower(ir, features="strides", out_indices=[True])
    with pytest.raises(SpecError, match="features"):
        lower(ir, features={"stem.act": 1})  # type: ignore[arg-type]
    assert lowered == [ir]


def test_the_footprint_is_the_per_op_figures() -> None:
    """The one-pass fold that resolve's memory check and `analyze` share counts what the per-op functions count."""
    from specdsl.passes import analysis
    from tests.strategies import EVERY_FAMILY_FEATURE

    for text in (TINY_SPEC, EVERY_FAMILY_FEATURE):
        net = lower(specdsl.loads(text))
        figures = analysis.footprint(net)
        assert list(figures.params) == [analysis.op_params(op) for op in net.ops]
        assert list(figures.macs) == [analysis.op_macs(op) for op in net.ops]
        assert list(figures.activations) == [analysis.op_activation_elements(op) for op in net.ops]
        assert figures.tensor_elements == sum(math.prod(shape) for shape in net.tensors().values())
        shapes = net.shapes()
        peak = max(sum(math.prod(shapes[name]) for name in op.inputs) + math.prod(op.out_shape) for op in net.ops)
        assert figures.peak_elements == peak
