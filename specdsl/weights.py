"""Canonical weights: the lowered network's tensor names and shapes, stored as safetensors (never pickle).

Every backend reads and writes the same file. Names are the lowering's op names plus a suffix
(``stages.1.0.expand.conv.weight``) and tensors are in PyTorch layout (conv OIHW, depthwise
(C, 1, kH, kW), linear (out, in)); docs/weights.md is the reference.

This module works on numpy arrays and imports no framework: a Keras or ONNX user never needs
torch. Framework models are accepted where they can be read without importing their framework
(a torch module's ``state_dict()``); backends convert at their own edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from specdsl.ir import ModelIR
from specdsl.passes.lower import BatchNorm, CondConv, Conv, Linear, LoweredNetwork, Shape, lower

#: Written to the safetensors metadata; readers accept files without it.
FORMAT = "specdsl-canonical/1"
#: BatchNorm batch counters: framework state that the canonical scheme leaves out.
_NOT_CANONICAL = "num_batches_tracked"


class WeightsError(ValueError):
    """Weights that do not fit the network: names the first offending tensor."""


def canonical_shapes(ir: ModelIR) -> dict[str, Shape]:
    """Every canonical tensor name of ``ir`` with its shape, in forward order."""
    return lower(ir).tensors()


def validate(state: Mapping[str, Any], ir: ModelIR, *, source: str = "weights") -> None:
    """Raise `WeightsError` unless ``state`` holds exactly the canonical tensors of ``ir``, shapes included."""
    expected = canonical_shapes(ir)
    for name, shape in expected.items():
        if name not in state:
            raise WeightsError(f"{source} do not fit {ir.name}: missing tensor '{name}' {shape}")
        found = tuple(state[name].shape)
        if found != shape:
            raise WeightsError(f"{source} do not fit {ir.name}: '{name}' has shape {found}, the network needs {shape}")
    extra = [name for name in state if name not in expected and not name.endswith(_NOT_CANONICAL)]
    if extra:
        raise WeightsError(
            f"{source} do not fit {ir.name}: {len(extra)} tensor(s) the network does not have, first '{extra[0]}'"
        )


def to_numpy(value: Any) -> np.ndarray:
    """A framework tensor or array as a contiguous numpy array (a torch tensor is detached and moved to CPU)."""
    if hasattr(value, "detach"):  # torch.Tensor, read without importing torch
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(value))


def state_of(model_or_state: Any) -> dict[str, np.ndarray]:
    """Canonical numpy tensors from a name -> tensor mapping, a Keras model built by specdsl, or a model whose
    ``state_dict()`` is canonical."""
    if isinstance(model_or_state, Mapping):
        state = model_or_state
    elif type(model_or_state).__module__.startswith("keras."):  # recognised without importing keras
        from specdsl.backends import load_backend

        return load_backend("keras").state_of(model_or_state)
    elif hasattr(model_or_state, "state_dict"):
        if getattr(model_or_state, "fused", False):
            raise WeightsError(
                "this is a fused (deploy) model, whose convs hold folded batch norm: save the unfused model"
            )
        state = model_or_state.state_dict()
    else:
        raise TypeError(f"cannot read canonical weights from a {type(model_or_state).__name__}")
    return {name: to_numpy(tensor) for name, tensor in state.items() if not name.endswith(_NOT_CANONICAL)}


def save(
    model_or_state: Any,
    path: str | Path,
    *,
    ir: ModelIR | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write canonical weights to a safetensors file; with ``ir``, check them first.

    The file is serialised in memory and written with Python's I/O, so a full disk or a read-only
    directory is an ordinary OSError (safetensors' own writer reports them as its own exception type).
    """
    from safetensors.numpy import save as serialize

    tensors = state_of(model_or_state)
    if ir is not None:
        validate(tensors, ir)
    path = Path(path)
    path.write_bytes(serialize(tensors, metadata={"format": FORMAT, **(metadata or {})}))
    return path


def load(path: str | Path, ir: ModelIR) -> dict[str, np.ndarray]:
    """Read a canonical safetensors file and check it against ``ir``."""
    from safetensors.numpy import load_file

    state = load_file(str(path))
    validate(state, ir, source=f"weights in {path}")
    return state


def initial(ir: ModelIR, seed: int = 0) -> dict[str, np.ndarray]:
    """The reference init as canonical float32 arrays, reproducible from ``seed`` alone (numpy's PCG64).

    Same rule as the PyTorch backend's: conv (and each CondConv expert) N(0, sqrt(2 / fan_out)) with
    fan_out = k*k*out // groups, linear U(+-1/sqrt(out)), biases 0, BN weight 1, bias 0, mean 0, var 1.
    The random stream is numpy's, so a seed gives other values than ``specdsl.build(ir, seed=seed)``;
    it lets a backend without torch emit a complete model.
    """
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}
    for op in lower(ir).ops:
        for name, shape in op.tensors().items():
            suffix = name.rsplit(".", 1)[1]
            if isinstance(op, Conv | CondConv) and suffix == "weight":
                fan_out = op.kernel * op.kernel * op.out_channels // op.groups
                state[name] = rng.standard_normal(shape, dtype=np.float32)
                state[name] *= np.float32(math.sqrt(2.0 / fan_out))
            elif isinstance(op, Linear) and suffix == "weight":
                bound = 1.0 / math.sqrt(op.out_features)
                state[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
            elif suffix in ("weight", "running_var"):  # BN scale and variance
                state[name] = np.ones(shape, dtype=np.float32)
            else:  # biases, BN shift and mean
                state[name] = np.zeros(shape, dtype=np.float32)
    return state


def fold_batch_norm(net: LoweredNetwork, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` with every BN that the lowering marks foldable (``folds_into``) folded into its conv.

    The conv's weight is scaled per output channel and it gains (or updates) ``<conv>.bias``; the BN's
    tensors are dropped. Arithmetic in float64, results in the conv weight's dtype, so an inference
    graph built from the folded tensors stays within float32 rounding of the unfolded network.
    """
    out = dict(state)
    for op in net.ops:
        if not isinstance(op, BatchNorm) or op.folds_into is None:
            continue
        bn = {name.rsplit(".", 1)[1]: np.asarray(out.pop(name), np.float64) for name in op.tensors()}
        scale = bn["weight"] / np.sqrt(bn["running_var"] + op.eps)
        shift = bn["bias"] - bn["running_mean"] * scale
        weight = np.asarray(out[f"{op.folds_into}.weight"])
        bias = out.get(f"{op.folds_into}.bias")
        if bias is not None:
            shift = shift + np.asarray(bias, np.float64) * scale
        out[f"{op.folds_into}.weight"] = (weight.astype(np.float64) * scale[:, None, None, None]).astype(weight.dtype)
        out[f"{op.folds_into}.bias"] = shift.astype(weight.dtype)
    return out


def read(weights: str | Path | Mapping[str, Any] | None, ir: ModelIR) -> dict[str, np.ndarray] | None:
    """What a backend's ``weights=`` argument holds, checked against ``ir``: a canonical safetensors path or a
    name -> tensor mapping (numpy arrays or framework tensors), as numpy; None stays None (random init)."""
    if weights is None:
        return None
    if isinstance(weights, str | Path):
        return load(weights, ir)
    validate(weights, ir)
    return state_of(weights)
