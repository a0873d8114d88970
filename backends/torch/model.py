"""IR -> `layers.EfficientNet`: lower, build on the meta device, then materialize weights (given, or
`specdsl.weights.initial`'s)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from specdsl.ir import ModelIR
from specdsl.passes.features import Features
from specdsl.passes.lower import LoweredNetwork, lower_for_build

from .layers import EfficientNet, materialize

Weights = str | Path | Mapping[str, Any] | None


def network_json(ir: ModelIR, features: Features = None, out_indices: Sequence[int] | None = None) -> dict[str, Any]:
    """What `layers.EfficientNet` is built from: the lowering of ``ir`` (a backbone's with ``features``) as JSON."""
    return lower_for_build(ir, features, out_indices).to_json()


def build(
    ir: ModelIR,
    *,
    weights: Weights = None,
    seed: int = 0,
    deploy: bool = False,
    memory_efficient: bool = False,
    device: torch.device | str | None = None,
    features: Features = None,
    out_indices: Sequence[int] | None = None,
) -> EfficientNet:
    """Translate ``ir`` into a model.

    ``weights``: a canonical safetensors path or a name -> tensor mapping (numpy arrays or torch
    tensors, as `specdsl.weights.load` and the importers return); without it, the reference init
    `specdsl.weights.initial(ir, seed)`, the same values every backend assigns. ``deploy``: fold BN into
    the convs (`specdsl.weights.fold_batch_norm`) and switch to eval (inference only). ``memory_efficient``:
    recompute block activations in backward while training. ``device="meta"`` builds shapes only (no init,
    no memory). ``features`` / ``out_indices``: a backbone (`specdsl.passes.features`) whose forward returns
    its tapped maps; it reads the full canonical weights and ignores the head's tensors.
    """
    net = lower_for_build(ir, features, out_indices)
    model = build_network(net, ir, weights=weights, seed=seed, memory_efficient=memory_efficient, device=device)
    from specdsl.weights import preprocessing

    model = fused(model, net) if deploy else model
    model.preprocessing = preprocessing(net)  # what the weights expect (as ONNX metadata records it)
    return model


def fused(model: EfficientNet, net: LoweredNetwork) -> EfficientNet:
    """``model.fuse()`` with the BN folded by `specdsl.weights.fold_batch_norm`, the fold every backend uses (a model
    on the meta device, which holds no values, is fused as shapes only)."""
    from specdsl import weights as canonical

    if any(parameter.is_meta for parameter in model.parameters()):
        return model.fuse()
    folded = canonical.fold_batch_norm(net, canonical.state_of(model))
    return model.fuse({name: torch.from_numpy(value) for name, value in folded.items()})


def build_network(
    net: LoweredNetwork,
    ir: ModelIR,
    *,
    weights: Weights = None,
    seed: int = 0,
    memory_efficient: bool = False,
    device: torch.device | str | None = None,
) -> EfficientNet:
    """`build` for a lowering of ``ir`` given (the whole network, or a backbone): what `emit` saves weights from."""
    from specdsl import weights as canonical

    meta = device is not None and torch.device(device).type == "meta"
    if meta and weights is not None:
        raise ValueError("a model on the meta device holds no values: build it without weights")
    with torch.device("meta"):
        model = EfficientNet(net.to_json(), memory_efficient=memory_efficient)
    if not meta:
        state = canonical.read(weights, ir)
        state = canonical.initial(ir, seed) if state is None else state  # the init every backend assigns
        kept = net.tensors()
        model = materialize(model, {name: torch.as_tensor(v) for name, v in state.items() if name in kept})
        if device is not None:
            model = model.to(device)
    return model
