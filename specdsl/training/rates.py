"""Dropout and stochastic depth per stage, changed in place on the built model (no rebuild).

The rates come from the lowering, the one place that decides them: the spec is re-resolved with the
stage's head dropout and drop-path setting, and each ``dropout`` / ``drop_path`` op's rate is copied onto
the module at the op's canonical name (``nn.Dropout.p``, ``DropPath.rate``).
"""

from __future__ import annotations

from torch import nn

from specdsl.ir import ModelIR
from specdsl.passes.lower import lower
from specdsl.passes.resolve import resolve
from specdsl.training.schedule import StagePlan


def stage_rates(ir: ModelIR, stage: StagePlan) -> dict[str, float]:
    """Op name -> rate of every dropout and drop-path op, for ``ir`` trained at ``stage``."""
    spec = ir.spec
    doc = spec.model_copy(
        update={
            "head": spec.head.model_copy(update={"dropout": stage.dropout}),
            "defaults": spec.defaults.model_copy(update={"drop_path": stage.drop_path}),
        }
    )
    rates = {op.name: op.rate for op in lower(resolve(doc)).ops if op.op in ("dropout", "drop_path")}
    expected = {op.name for op in lower(ir).ops if op.op in ("dropout", "drop_path")}
    if set(rates) != expected:  # a bug: the IR was not resolved from its own spec
        raise ValueError("the network's regularisation ops differ from its spec's")
    return rates


def apply_rates(model: nn.Module, rates: dict[str, float]) -> None:
    for name, rate in rates.items():
        module = model.get_submodule(name)
        if isinstance(module, nn.Dropout):
            module.p = rate
        else:
            module.rate = rate


def current_rates(model: nn.Module, names: list[str]) -> dict[str, float]:
    """What the model will actually use, read back from its modules (for the metrics log)."""
    modules = {name: model.get_submodule(name) for name in names}
    return {name: module.p if isinstance(module, nn.Dropout) else module.rate for name, module in modules.items()}
