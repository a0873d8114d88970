"""PyTorch backend: the resolved IR as an ``nn.Module`` whose state_dict keys are the canonical weight names.

The layers live in `layers` (torch only, copied verbatim into emitted files); `config` copies the
IR into their config table; `emit` writes the standalone module, weights and export.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from specdsl.ir import ModelIR

from .config import network_config
from .emit import emit
from .layers import EfficientNet, materialize

__all__ = ["EfficientNet", "build", "emit", "network_config"]

Weights = str | Path | Mapping[str, torch.Tensor] | None


def build(
    ir: ModelIR,
    *,
    weights: Weights = None,
    seed: int = 0,
    deploy: bool = False,
    memory_efficient: bool = False,
    device: torch.device | str | None = None,
) -> EfficientNet:
    """Translate ``ir`` into a model.

    ``weights``: a canonical safetensors path or a name -> tensor mapping (as the importers
    return); without it, parameters get the reference init drawn from ``seed``. ``deploy``: fold
    BN into the convs and switch to eval (inference only). ``memory_efficient``: recompute block
    activations in backward while training. ``device="meta"`` builds shapes only (no init, no memory).
    """
    from specdsl import weights as canonical

    meta = device is not None and torch.device(device).type == "meta"
    if meta and weights is not None:
        raise ValueError("a model on the meta device holds no values: build it without weights")
    with torch.device("meta"):
        model = EfficientNet(network_config(ir), memory_efficient=memory_efficient)
    if not meta:
        state = None
        if isinstance(weights, str | Path):
            state = canonical.load(weights, ir)
        elif weights is not None:
            state = dict(weights)
            canonical.validate(state, ir)
        model = materialize(model, state, seed)
        if device is not None:
            model = model.to(device)
    return model.fuse() if deploy else model
