"""EfficientNet-family networks in plain PyTorch, built op by op from specdsl's lowered network.

This module imports nothing but the standard library and torch on purpose: ``specdsl`` copies its
source text verbatim into every emitted standalone model file, so ``specdsl.build`` and the
emitted file run the very same code.

The network arrives as the JSON form of specdsl's lowering (``specdsl.lower(ir).to_json()``):
ops in forward order, each with its canonical name, its kind (``op``), the ops it reads and every
number it needs. `OP_MODULES` maps each kind to a module; `EfficientNet` places each op's module
at the op's canonical name, so state_dict keys are the canonical weight names (docs/weights.md),
and runs the ops in order. Nothing here decides a width, a group count, a pad or a rate.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm  # BatchNorm2d and SyncBatchNorm alike
from torch.utils.checkpoint import checkpoint

#: One op of the lowered network, in its JSON form: {"op": "conv", "name": ..., "inputs": [...], ...}.
OpSpec = Mapping[str, Any]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding of one spatial dim as (before, after), for inputs of a size the network
    was not lowered for (the lowering's pads cover the size it was lowered at)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_padding(op: OpSpec) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """A conv op's pads as (padding inside the conv, explicit ``F.pad`` before it): inside where they are
    symmetric and fixed, else explicit."""
    top, bottom, left, right = op["pads"]
    if not op["dynamic_padding"] and top == bottom and left == right:
        return (top, left), (0, 0, 0, 0)
    return (0, 0), (left, right, top, bottom)


def pad_input(
    x: torch.Tensor, pad: tuple[int, ...], op_input_hw: tuple[int, ...], dynamic: bool, kernel: int, stride: int
) -> torch.Tensor:
    """``F.pad`` with a conv's explicit pad, recomputed as TF SAME when the op has ``dynamic_padding`` and the
    input is not the size the network was lowered at."""
    if dynamic and tuple(x.shape[-2:]) != op_input_hw:
        pad = (*same_padding(x.shape[-1], kernel, stride), *same_padding(x.shape[-2], kernel, stride))
    return F.pad(x, pad) if any(pad) else x


class Conv(nn.Conv2d):
    """A conv op: the lowering's pads inside the conv where they are symmetric and fixed, else an explicit
    ``F.pad`` (recomputed as TF SAME for an input of another size when the op has ``dynamic_padding``)."""

    def __init__(self, op: OpSpec) -> None:
        inside, self.static_pad = conv_padding(op)
        super().__init__(
            op["in_channels"],
            op["out_channels"],
            op["kernel"],
            op["stride"],
            padding=inside,
            groups=op["groups"],
            bias=op["bias"],
        )
        self.dynamic_padding: bool = op["dynamic_padding"]
        self.input_hw = tuple(op["in_shape"][1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_input(x, self.static_pad, self.input_hw, self.dynamic_padding, self.kernel_size[0], self.stride[0])
        return super().forward(x)


class CondConv(nn.Module):
    """A cond_conv op: each sample's kernel is its routing-weighted sum of the expert kernels; the batch runs as
    one conv with ``groups * batch`` groups, samples side by side along channels (as gen-efficientnet does)."""

    def __init__(self, op: OpSpec) -> None:
        super().__init__()
        self.inside, self.static_pad = conv_padding(op)
        self.stride: int = op["stride"]
        self.groups: int = op["groups"]
        self.out_channels: int = op["out_channels"]
        self.dynamic_padding: bool = op["dynamic_padding"]
        self.input_hw = tuple(op["in_shape"][1:])
        kernel = op["kernel"]
        per_group = op["in_channels"] // op["groups"]
        self.weight = nn.Parameter(torch.empty(op["experts"], op["out_channels"], per_group, kernel, kernel))

    def forward(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        kernel = self.weight.shape[-1]
        x = pad_input(x, self.static_pad, self.input_hw, self.dynamic_padding, kernel, self.stride)
        batch, channels, height, width = x.shape
        mixed = (routing @ self.weight.flatten(1)).reshape(batch * self.out_channels, *self.weight.shape[2:])
        out = F.conv2d(
            x.reshape(1, batch * channels, height, width), mixed, None, self.stride, self.inside, 1, self.groups * batch
        )
        return out.reshape(batch, self.out_channels, *out.shape[2:])


class Slice(nn.Module):
    """Channels ``start:stop``: one group of a split conv."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start : self.stop]


class Concat(nn.Module):
    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        return torch.cat(parts, 1)


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class Mul(nn.Module):
    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return x * scale


class Add(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Per-sample stochastic depth: zero whole samples with probability ``rate``, rescale the rest."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask


class DropPath(nn.Module):
    """Stochastic depth; ``rate`` may be changed between steps (progressive learning)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hard_swish": nn.Hardswish,
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": nn.Hardsigmoid,
}

#: Op kind -> the module that computes it, from the op's fields.
OP_MODULES: dict[str, Callable[[OpSpec], nn.Module]] = {
    "conv": Conv,
    "batch_norm": lambda op: nn.BatchNorm2d(op["channels"], eps=op["eps"], momentum=op["momentum"]),
    "activation": lambda op: ACTIVATIONS[op["function"]](),
    "global_avg_pool": lambda op: GlobalAvgPool(),
    "flatten": lambda op: Flatten(),
    "mul": lambda op: Mul(),
    "add": lambda op: Add(),
    "drop_path": lambda op: DropPath(op["rate"]),
    "dropout": lambda op: nn.Dropout(op["rate"]),
    "linear": lambda op: nn.Linear(op["in_features"], op["out_features"], bias=op["bias"]),
    "cond_conv": CondConv,
    "slice": lambda op: Slice(op["start"], op["stop"]),
    "concat": lambda op: Concat(),
}


def _place(root: nn.Module, name: str, module: nn.Module) -> None:
    """Register ``module`` at dotted ``name`` under ``root``, creating plain containers on the way."""
    *path, leaf = name.split(".")
    parent = root
    for part in path:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    parent.add_module(leaf, module)


class _Step(NamedTuple):
    """One op to run: its module (looked up at run time, so converted or folded modules are seen), the value
    slots it reads and writes, and the slots no later step reads."""

    parent: nn.Module
    attr: str
    inputs: tuple[int, ...]
    output: int
    release: tuple[int, ...]


class _Segment(NamedTuple):
    """Consecutive steps of one block (``block`` is its global index) or of the stem/head (None): the unit
    that ``memory_efficient`` recomputes."""

    block: int | None
    steps: tuple[_Step, ...]
    inputs: tuple[int, ...]  # slots read from before the segment
    outputs: tuple[int, ...]  # slots written here and read after it
    release: tuple[int, ...]  # input slots whose last reader is in the segment


def _execute(steps: tuple[_Step, ...], values: dict[int, torch.Tensor]) -> None:
    for parent, attr, inputs, output, release in steps:
        values[output] = getattr(parent, attr)(*[values[slot] for slot in inputs])
        for slot in release:
            del values[slot]


def _program(
    root: nn.Module, ops: list[OpSpec], start: str, result: str, keep: tuple[str, ...] = ()
) -> tuple[int, int, tuple[_Segment, ...]]:
    """Steps from op ``start``'s output (or "input") to op ``result``'s, grouped into segments; the outputs of the
    ops in ``keep`` (feature taps) stay available to the end.

    Value slots are op positions (0 is the input). An op whose module is an ``nn.Identity`` (a BN folded
    into its conv) is skipped: its output is its input's slot.
    """
    slot = {"input": 0, **{op["name"]: index + 1 for index, op in enumerate(ops)}}
    begin = next((i + 1 for i, op in enumerate(ops) if op["name"] == start), 0)
    end = next(i for i, op in enumerate(ops) if op["name"] == result)
    rows: list[tuple[OpSpec, nn.Module, str, tuple[int, ...]]] = []
    for op in ops[begin : end + 1]:
        path, _, attr = op["name"].rpartition(".")
        parent = root.get_submodule(path)
        inputs = tuple(slot[name] for name in op["inputs"])
        if isinstance(getattr(parent, attr), nn.Identity):
            slot[op["name"]] = inputs[0]
            continue
        rows.append((op, parent, attr, inputs))
    final = slot[result]
    kept = {final, *(slot[name] for name in keep)}
    last_read = {s: index for index, row in enumerate(rows) for s in row[3]}
    for s in kept:
        last_read.pop(s, None)
    steps = [
        _Step(parent, attr, inputs, slot[op["name"]], tuple(sorted({s for s in inputs if last_read.get(s) == index})))
        for index, (op, parent, attr, inputs) in enumerate(rows)
    ]
    segments: list[_Segment] = []
    index = 0
    while index < len(steps):
        block = rows[index][0].get("block")
        stop = index
        while stop < len(steps) and rows[stop][0].get("block") == block:
            stop += 1
        written = {step.output for step in steps[index:stop]}
        read = [s for step in steps[index:stop] for s in step.inputs]
        later = {s for step in steps[stop:] for s in step.inputs} | kept
        segments.append(
            _Segment(
                block,
                tuple(steps[index:stop]),
                tuple(dict.fromkeys(s for s in read if s not in written)),
                tuple(sorted(written & later)),
                tuple(sorted({s for s in read if s not in written | kept and last_read.get(s, -1) < stop})),
            )
        )
        index = stop
    return slot.get(start, 0), final, tuple(segments)


@contextlib.contextmanager
def _frozen_running_stats(norms: list[_BatchNorm]) -> Iterator[None]:
    """While a checkpointed block is recomputed in backward, keep its BNs from updating running stats twice.

    Momentum 0 leaves the running stats exactly as they are while the BN still saves the same
    tensors for backward (checkpoint checks that); the batch counter is put back afterwards.
    """
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for norm in norms:
        norm.momentum = 0.0
    try:
        yield
    finally:
        for norm, (momentum, count) in zip(norms, saved, strict=True):
            norm.momentum = momentum
            if count is not None:
                norm.num_batches_tracked.copy_(count)


class FeatureInfo(list):
    """A backbone's feature maps, one dict per tap (``num_chs``, ``reduction``, ``module``: the op's name), as
    timm's ``feature_info``, with its accessors."""

    def channels(self) -> list[int]:
        return [info["num_chs"] for info in self]

    def reduction(self) -> list[int]:
        return [info["reduction"] for info in self]

    def module_name(self) -> list[str]:
        return [info["module"] for info in self]


class EfficientNet(nn.Module):
    """A lowered network as a module: ``forward_features`` runs up to the final feature map, ``forward_head``
    from there to the logits.

    A backbone (the lowering has ``taps``: no head) returns the list of its tapped feature maps from
    ``forward``, described by ``feature_info`` as in timm.

    ``memory_efficient=True`` checkpoints every block while training with autograd on: block
    activations are recomputed in backward instead of stored. Eval mode, and therefore export,
    always takes the plain path.
    """

    def __init__(self, network: Mapping[str, Any], *, memory_efficient: bool = False) -> None:
        super().__init__()
        self.network = network
        self.memory_efficient = memory_efficient
        self.fused = False
        self.taps: tuple[str, ...] = tuple(tap["name"] for tap in network.get("taps", ()))
        self.feature_info = FeatureInfo(
            {"num_chs": tap["channels"], "reduction": tap["reduction"], "module": tap["name"]}
            for tap in network.get("taps", ())
        )
        for op in network["ops"]:
            _place(self, op["name"], OP_MODULES[op["op"]](op))
        self._compile()

    def _compile(self) -> None:
        ops, features = self.network["ops"], self.network["features"]
        self._features_program = _program(self, ops, "input", features, self.taps)
        self._head_program = _program(self, ops, features, self.network["output"])
        slot = {"input": 0, **{op["name"]: index + 1 for index, op in enumerate(ops)}}
        for op in ops:  # a folded BN's output is its conv's slot (as in `_program`)
            path, _, attr = op["name"].rpartition(".")
            if isinstance(getattr(self.get_submodule(path), attr), nn.Identity):
                slot[op["name"]] = slot[op["inputs"][0]]
        self._tap_slots = tuple(slot[name] for name in self.taps)

    def _run(
        self, program: tuple[int, int, tuple[_Segment, ...]], x: torch.Tensor, taps: tuple[int, ...] = ()
    ) -> torch.Tensor | list[torch.Tensor]:
        start, final, segments = program
        values = {start: x}
        recompute = self.memory_efficient and self.training and torch.is_grad_enabled()
        for segment in segments:
            if not recompute or segment.block is None:
                _execute(segment.steps, values)
                continue
            norms = [m for step in segment.steps if isinstance(m := getattr(step.parent, step.attr), _BatchNorm)]
            outputs = checkpoint(
                _run_segment,
                segment,
                *[values[slot] for slot in segment.inputs],
                use_reentrant=False,
                context_fn=lambda norms=norms: (contextlib.nullcontext(), _frozen_running_stats(norms)),
            )
            values.update(zip(segment.outputs, outputs, strict=True))
            for slot in segment.release:
                del values[slot]
        return [values[slot] for slot in taps] if taps else values[final]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map, before pooling (a backbone's: its last tap)."""
        return self._run(self._features_program, x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map -> logits: pooling, dropout, classifier (and whatever else the lowering puts there)."""
        return self._run(self._head_program, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.taps:
            return self._run(self._features_program, x, self._tap_slots)
        return self.forward_head(self.forward_features(x))

    def init_rule(self) -> dict[str, tuple[str, float]]:
        """The reference init of every canonical tensor as (distribution, scale), in module order: "normal" N(0, scale),
        "uniform" U(-scale, scale), "ones", "zeros".

        specdsl builds assign ``specdsl.weights.initial``; this restatement of its rule (`specdsl.weights.init_rule`,
        which a test holds it to, tensor by tensor) exists because this file imports nothing but torch, for
        ``reset_parameters``: conv and each CondConv expert N(0, sqrt(2 / fan_out)), fan_out = k*k*out // groups;
        linear U(+-1/sqrt(out)); biases 0; BN weight 1, bias 0, mean 0, var 1.
        """
        rules: dict[str, tuple[str, float]] = {}
        for prefix, module in self.named_modules():
            if isinstance(module, nn.Conv2d | CondConv):  # a CondConv: every expert as a conv of its shape
                kernel = module.weight.shape[-1]
                fan_out = kernel * kernel * module.out_channels // module.groups
                rules[f"{prefix}.weight"] = ("normal", math.sqrt(2.0 / fan_out))
                if getattr(module, "bias", None) is not None:
                    rules[f"{prefix}.bias"] = ("zeros", 0.0)
            elif isinstance(module, nn.Linear):
                rules[f"{prefix}.weight"] = ("uniform", 1.0 / math.sqrt(module.out_features))
                if module.bias is not None:
                    rules[f"{prefix}.bias"] = ("zeros", 0.0)
            elif isinstance(module, _BatchNorm):
                for suffix, value in (("weight", "ones"), ("bias", "zeros"), ("running_mean", "zeros")):
                    rules[f"{prefix}.{suffix}"] = (value, 0.0)
                rules[f"{prefix}.running_var"] = ("ones", 0.0)
        return rules

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """`init_rule` drawn from ``seed`` with a private torch generator (global RNG untouched): the standalone
        file's init without a weights file. The rule is specdsl's, the random stream torch's, so the values differ
        from ``specdsl.build(ir, seed=seed)``'s (numpy's stream)."""
        generator = torch.Generator().manual_seed(seed)
        tensors = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        for module in self.modules():
            if isinstance(module, _BatchNorm):
                module.reset_running_stats()  # the batch counter too
        for name, (distribution, scale) in self.init_rule().items():
            if distribution == "normal":
                tensors[name].normal_(0.0, scale, generator=generator)
            elif distribution == "uniform":
                tensors[name].uniform_(-scale, scale, generator=generator)
            else:
                tensors[name].fill_(1.0 if distribution == "ones" else 0.0)

    @torch.no_grad()
    def fuse(self, folded: Mapping[str, torch.Tensor] | None = None) -> EfficientNet:
        """Fold every BN the lowering marks foldable into its conv, store conv weights channels_last and switch to
        eval: inference only.

        ``folded``: the folded convs' ``weight`` and ``bias`` already computed (specdsl passes
        ``specdsl.weights.fold_batch_norm``'s); without it they are folded here (`fold_batch_norm`, the same
        arithmetic, for the standalone file). channels_last lets the CPU convolutions skip layout conversions
        (benchmarks/results_torch.md: 0.6-0.8x the latency of NCHW weights); inputs may stay NCHW, outputs equal
        within rounding.
        """
        for op in self.network["ops"]:
            if op["op"] != "batch_norm" or op["folds_into"] is None:
                continue
            path, _, attr = op["name"].rpartition(".")
            parent = self.get_submodule(path)
            norm = getattr(parent, attr)
            if isinstance(norm, _BatchNorm):
                conv = self.get_submodule(op["folds_into"])
                if folded is None:
                    fold_batch_norm(conv, norm)
                else:
                    for suffix in ("weight", "bias"):
                        value = folded[f"{op['folds_into']}.{suffix}"].to(conv.weight)
                        setattr(conv, suffix, nn.Parameter(value))
                setattr(parent, attr, nn.Identity())
        self.fused = True
        self._compile()
        for module in self.modules():  # conv kernels only: a CondConv's (experts, O, I, k, k) weight has no such layout
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
        return self.eval()


def _run_segment(segment: _Segment, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    values = dict(zip(segment.inputs, inputs, strict=True))
    _execute(segment.steps, values)
    return tuple(values[slot] for slot in segment.outputs)


def fold_batch_norm(conv: nn.Conv2d, bn: _BatchNorm) -> None:
    """Fold ``bn`` (which reads ``conv``'s output) into ``conv``, in float64 so the fused model stays within
    rounding of the unfused one."""
    weight = conv.weight
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() - bn.running_mean.double() * scale
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    conv.weight = nn.Parameter((weight.double() * scale.reshape(-1, 1, 1, 1)).to(weight.dtype))
    conv.bias = nn.Parameter(shift.to(weight.dtype))


_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Minimal safetensors reader (little-endian hosts), so a standalone model needs only torch. No pickle.

    A file that is not one (empty, truncated, a header longer than the file, unknown dtypes) is a ValueError
    naming it; a FIFO or device is refused before it is read. specdsl itself reads through `specdsl.weights`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    if len(data) < 8 or header_len > len(data) - 8:
        raise ValueError(f"{path}: not a safetensors file ({len(data):,} bytes; header of {header_len:,} declared)")
    try:
        header = json.loads(data[8 : 8 + header_len])
        header.pop("__metadata__", None)
        body = memoryview(data)[8 + header_len :]
        tensors = {}
        for name, info in header.items():
            start, end = info["data_offsets"]
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            if not 0 <= start <= end <= len(body):
                raise ValueError(f"tensor '{name}' lies outside the file (truncated?)")
            raw = bytearray(body[start:end])
            flat = torch.frombuffer(raw, dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
            tensors[name] = flat.reshape(info["shape"])
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({error})") from None
    return tensors


def load_canonical(model: EfficientNet, state: Mapping[str, torch.Tensor]) -> None:
    """Load canonical weights: every parameter and running stat must be present, nothing extra (a backbone ignores
    the head's); floating point
    (any float dtype is cast), finite, BN variances not negative. (`specdsl.weights` checks the same before a
    build; this is the standalone file's own check, which cannot import specdsl.)"""
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if not tensor.is_floating_point():
            raise ValueError(f"weights: tensor '{name}' is {tensor.dtype}; canonical weights are floating point")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"weights: tensor '{name}' holds non-finite values")
        if name.endswith(".running_var") and bool((tensor < 0).any()):
            raise ValueError(f"weights: tensor '{name}' holds a negative variance")
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()  # the batch counters are not canonical: they restart at zero
    if model.taps:  # a backbone reads the full network's weights and ignores the head's
        own = model.state_dict()
        state = {name: tensor for name, tensor in state.items() if name in own}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def materialize(model: EfficientNet, state: Mapping[str, torch.Tensor] | None, seed: int = 0) -> EfficientNet:
    """Give a model built on the meta device real CPU storage: ``state`` if given, else the init from ``seed``.

    Building on meta first means no default initializer ever draws from the global RNG.
    """
    model = model.to_empty(device="cpu")
    if state is None:
        model.reset_parameters(seed)
    else:
        load_canonical(model, state)
    return model
