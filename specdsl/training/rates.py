"""Dropout and stochastic depth per stage, changed in place on the built model (no rebuild).

The rates come from the one rule that decides them (`specdsl.passes.regularisation.rates`), applied to the
lowering's dropout and drop-path ops with the stage's head dropout and drop-path setting; each rate is copied onto
the module at the op's canonical name (``nn.Dropout.p``, ``DropPath.rate``).
"""

from __future__ import annotations

from torch import nn

from specdsl.ir import ModelIR
from specdsl.passes import regularisation
from specdsl.passes.lower import lower
from specdsl.training.schedule import StagePlan


def stage_rates(ir: ModelIR, stage: StagePlan) -> dict[str, float]:
    """Op name -> rate of every dropout and drop-path op, for ``ir`` trained at ``stage``."""
    return regularisation.rates(
        lower(ir), dropout=stage.dropout, drop_path=stage.drop_path, total_blocks=len(ir.blocks)
    )


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
