"""The exact meaning of a lowered network: a numpy float64 executor, slow on purpose.

Each op kind is a few lines of plain numpy that state what the op computes, in inference mode
(batch norm with running statistics, dropout and drop-path as identity). Every backend is tested
against this executor with the same weights: it is the one oracle, and it depends on nothing but
numpy, so a disagreement is the backend's.

    logits = specdsl.reference.run(specdsl.lower(ir), weights.load(path, ir), images)  # images NCHW
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

from specdsl.passes.lower import (
    INPUT,
    Activation,
    Add,
    BatchNorm,
    Concat,
    CondConv,
    Conv,
    Dropout,
    DropPath,
    Flatten,
    GlobalAvgPool,
    Linear,
    LoweredNetwork,
    Mul,
    Op,
    Slice,
)

Array = np.ndarray
Weights = Mapping[str, Array]


def _relu6(x: Array) -> Array:
    return np.clip(x, 0.0, 6.0)


def _sigmoid(x: Array) -> Array:
    # Split by sign so that exp never overflows.
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    exp = np.exp(x[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


FUNCTIONS: dict[str, Callable[[Array], Array]] = {
    "silu": lambda x: x * _sigmoid(x),
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": _relu6,
    "hard_swish": lambda x: x * _relu6(x + 3.0) / 6.0,
    "sigmoid": _sigmoid,
    "hard_sigmoid": lambda x: _relu6(x + 3.0) / 6.0,
}


def conv2d(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: int,
    groups: int,
    pads: tuple[int, ...],
    dtype: type = np.float64,
) -> Array:
    """Grouped 2-D cross-correlation of NCHW ``x`` with OIHW ``weight`` after zero padding (top, bottom, left, right).

    Written as a sum over kernel offsets of strided slices times the kernel's tap, so memory stays
    at one output-sized array per group however large the kernel.
    """
    top, bottom, left, right = pads
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    batch, _, height, width = x.shape
    out_channels, group_in, kernel, _ = weight.shape
    out_h, out_w = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    group_out = out_channels // groups
    grouped = x.reshape(batch, groups, group_in, height, width)
    taps = weight.reshape(groups, group_out, group_in, kernel, kernel)
    out = np.zeros((batch, groups, group_out, out_h, out_w), dtype=dtype)
    for i in range(kernel):
        for j in range(kernel):
            window = grouped[:, :, :, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
            if group_in == 1 and group_out == 1:  # depthwise: one tap per channel
                out[:, :, 0] += window[:, :, 0] * taps[None, :, 0, 0, i, j, None, None]
            else:
                out += np.einsum("ngchw,goc->ngohw", window, taps[:, :, :, i, j], optimize=True)
    out = out.reshape(batch, out_channels, out_h, out_w)
    return out if bias is None else out + bias[None, :, None, None]


def _evaluate(op: Op, args: list[Array], weights: Weights, dtype: type = np.float64) -> Array:
    def tensor(suffix: str) -> Array:
        return np.asarray(weights[f"{op.name}.{suffix}"], dtype=dtype)

    match op:
        case Conv():
            bias = tensor("bias") if op.bias else None
            return conv2d(args[0], tensor("weight"), bias, op.stride, op.groups, op.pads, dtype)
        case CondConv():
            x, routing = args
            kernels = np.tensordot(routing, tensor("weight"), axes=1)  # per sample: sum_e r[e] * W[e]
            samples = []
            for n, kernel in enumerate(kernels):  # one sample at a time: each has its own mixed kernel
                samples.append(conv2d(x[n : n + 1], kernel, None, op.stride, op.groups, op.pads, dtype))
            return np.concatenate(samples)
        case Slice():
            return args[0][:, op.start : op.stop]
        case Concat():
            return np.concatenate(args, axis=1)
        case BatchNorm():
            scale = tensor("weight") / np.sqrt(tensor("running_var") + op.eps)
            shift = tensor("bias") - tensor("running_mean") * scale
            return args[0] * scale[None, :, None, None] + shift[None, :, None, None]
        case Activation():
            return FUNCTIONS[op.function](args[0])
        case GlobalAvgPool():
            return args[0].mean(axis=(2, 3), keepdims=True)
        case Flatten():
            return args[0].reshape(args[0].shape[0], -1)
        case Mul():
            return args[0] * args[1]
        case Add():
            return args[0] + args[1]
        case DropPath() | Dropout():
            return args[0]
        case Linear():
            out = args[0] @ tensor("weight").T
            return out + tensor("bias") if op.bias else out
    raise NotImplementedError(f"the reference executor has no rule for op kind {op.op!r}")


def _last_reads(net: LoweredNetwork, keep: set[str]) -> dict[str, list[str]]:
    """For each op, the values no op after it reads (and that are not in ``keep``): what can be freed once it ran.

    Why: a deep network at full resolution (L2 at 800 px) would hold tens of GiB if every output stayed alive;
    freed after its last reader, the oracle holds a few maps at a time, as a framework does.
    """
    last: dict[str, str] = {}
    for op in net.ops:
        for name in op.inputs:
            last[name] = op.name
    freed: dict[str, list[str]] = {op.name: [] for op in net.ops}
    for name, reader in last.items():
        if name not in keep:
            freed[reader].append(name)
    return freed


Step = tuple[Op, list[Array], dict[str, Array]]


def _forward(net: LoweredNetwork, x: Array, dtype: type, keep: set[str]) -> Iterator[Step]:
    """Yield ``(op, args, values)`` before each op runs, ``values`` holding what is still read later (and ``keep``)."""
    values: dict[str, Array] = {INPUT: np.asarray(x, dtype=dtype)}
    freed = _last_reads(net, keep)
    for op in net.ops:
        args = [values[name] for name in op.inputs]
        yield op, args, values
        for name in freed[op.name]:
            del values[name]


def run(
    net: LoweredNetwork, weights: Weights, x: Array, *, until: str | None = None, dtype: type = np.float64
) -> Array | list[Array]:
    """Inference of ``net`` on NCHW ``x`` (float64 unless ``dtype``); the output of op ``until`` if given, else logits,
    or for a backbone (``net.taps``) the list of its tapped maps, in tap order.

    Checks every op's output against the shape the lowering states. ``dtype=np.float32`` runs the same arithmetic
    in float32: not the oracle, but the rounding any float32 implementation of these ops meets (a floor for how
    close a float32 backend can come to the float64 result).
    """
    x = np.asarray(x)
    if x.shape[1:] != net.input_shape:
        raise ValueError(f"input has shape {x.shape[1:]} per sample; {net.name} was lowered for {net.input_shape}")
    keep = {tap.name for tap in net.taps} | {net.output} | ({until} if until else set())
    for op, args, values in _forward(net, x, dtype, keep):
        out = _evaluate(op, args, weights, dtype)
        if out.shape[1:] != op.out_shape:
            raise AssertionError(f"{op.name}: computed shape {out.shape[1:]}, the lowering states {op.out_shape}")
        values[op.name] = out
        if op.name == until:
            return out
    if net.taps:
        return [values[tap.name] for tap in net.taps]
    return values[net.output]


def calibrate_batch_norm(net: LoweredNetwork, weights: Weights, x: Array) -> dict[str, Array]:
    """``weights`` with every BN's running mean and variance set to the batch statistics of its input on NCHW ``x``.

    BNs are calibrated in forward order, each seeing the already calibrated ones before it (population
    variance; stored in the original dtype). Why: random weights with random statistics fade the signal
    to nothing within a few blocks; calibrated statistics keep activations normalised, so a backend test's
    logits depend on every op and on the input. The same weights then feed every backend and this oracle.
    """
    state = dict(weights)
    for op, args, values in _forward(net, x, np.float64, set()):
        if isinstance(op, BatchNorm):
            dtype = np.asarray(state[f"{op.name}.running_mean"]).dtype
            state[f"{op.name}.running_mean"] = args[0].mean(axis=(0, 2, 3)).astype(dtype)
            state[f"{op.name}.running_var"] = args[0].var(axis=(0, 2, 3)).astype(dtype)
        values[op.name] = _evaluate(op, args, state, np.float64)
    return state
