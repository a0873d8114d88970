"""ModelIR -> LoweredNetwork: the network as explicit layers, in forward order.

The IR says what each block *is* (its widths, SE, residual, rates); the lowering says which layers
compute it, with every number a framework needs spelled out: channels, kernel, stride, groups,
bias, explicit pads, batch-norm epsilon and momentum, activation, drop rates and tensor shapes.
It is the only place where a block becomes layers. Everything downstream reads it and decides
nothing: the analysis folds over the ops, canonical weight names are the ops' names, the numpy
reference (`specdsl.reference`) executes it, and every backend translates it op by op.

The network is a DAG in forward order: each op names the ops it reads (``"input"`` is the image),
and residual adds and SE multiplies are ops like any other. Every op produces one tensor; shapes
are per sample, ``(C, H, W)`` or ``(C,)``, at the spec's evaluation resolution.

Op names are the canonical names (docs/weights.md): a weight-bearing op ``stages.1.0.expand.conv``
owns ``stages.1.0.expand.conv.weight``. This module imports no framework.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, TypeAdapter

from specdsl.errors import SpecError
from specdsl.ir import Block, ModelIR, Normalization
from specdsl.passes.features import Features, Tap, select
from specdsl.vocabulary import Activation as ActivationKind
from specdsl.vocabulary import BlockKind, Padding

Shape = tuple[int, ...]
Pads = tuple[int, int, int, int]

INPUT = "input"  # the name ops use for the network's input image

#: Every elementwise function an `Activation` op applies: the block activations plus SE gates.
Function = Literal["silu", "relu", "relu6", "hard_swish", "sigmoid", "hard_sigmoid"]
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


def _same_size(kernel: int, stride: int, pads: Pads) -> bool:
    before, after = (kernel - 1) // 2, kernel // 2
    return stride == 1 and pads == (before, after, before, after)


def _depthwise(groups: int, in_channels: int, out_channels: int) -> bool:
    return groups > 1 and groups == in_channels == out_channels


@dataclass(frozen=True, kw_only=True, slots=True)
class _Op:
    """Fields every op has. Ops are plain frozen records: `lower` builds thousands of them, and pydantic
    validates whole networks at the JSON boundary (`LoweredNetwork.from_json`, `check`)."""

    name: str  # canonical name; a weight-bearing op owns `<name>.weight` etc.
    inputs: tuple[str, ...]  # names of the ops this one reads, in argument order ("input": the image)
    out_shape: Shape  # output shape per sample: (C, H, W) or (C,)
    block: int | None = None  # global index of the block this op belongs to; None: stem and head

    def tensors(self) -> dict[str, Shape]:
        """The canonical tensors this op owns, name -> shape (PyTorch layout)."""
        return {}


@dataclass(frozen=True, kw_only=True, slots=True)
class Conv(_Op):
    """2-D convolution, optionally grouped, with explicit zero padding ``pads`` applied to its input."""

    op: Literal["conv"] = "conv"
    in_shape: Shape
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    bias: bool
    pads: Pads  # zero padding (top, bottom, left, right) for an input of `in_shape`
    # True: `pads` are TensorFlow SAME's for `in_shape`, and an input of another size gets SAME recomputed
    # (pad = max((ceil(x/s)-1)*s + k - x, 0), the extra pixel after). False: `pads` hold for every size.
    dynamic_padding: bool

    @property
    def weight_shape(self) -> Shape:
        return (self.out_channels, self.in_channels // self.groups, self.kernel, self.kernel)

    @property
    def same_size(self) -> bool:
        """Stride 1 with pads that keep the size, an even kernel's extra pixel after: what "same" padding means at
        stride 1 in TensorFlow, Keras and PyTorch alike, so a backend may let the conv pad itself (padding modes
        differ only where the stride is 2)."""
        return _same_size(self.kernel, self.stride, self.pads)

    @property
    def depthwise(self) -> bool:
        """One filter per channel (groups == in == out > 1): frameworks give this conv its own layer and layout."""
        return _depthwise(self.groups, self.in_channels, self.out_channels)

    def tensors(self) -> dict[str, Shape]:
        out = {f"{self.name}.weight": self.weight_shape}
        if self.bias:
            out[f"{self.name}.bias"] = (self.out_channels,)
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class CondConv(_Op):
    """Conditionally parameterized conv (CondConv, Yang et al. 2019): ``inputs`` are (x, routing).

    ``routing`` is (experts,) per sample; sample n is convolved, exactly as a `Conv` with the same pads,
    stride and groups and no bias, with its own kernel sum_e routing[n, e] * weight[e]. The weight holds
    one `Conv` kernel per expert: (experts, out, in / groups, k, k).
    """

    op: Literal["cond_conv"] = "cond_conv"
    in_shape: Shape
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    experts: int
    pads: Pads  # as `Conv.pads`
    dynamic_padding: bool  # as `Conv.dynamic_padding`

    @property
    def same_size(self) -> bool:
        """As `Conv.same_size`."""
        return _same_size(self.kernel, self.stride, self.pads)

    @property
    def depthwise(self) -> bool:
        """As `Conv.depthwise`: each expert's kernel is (C, 1, k, k)."""
        return _depthwise(self.groups, self.in_channels, self.out_channels)

    @property
    def expert_shape(self) -> Shape:
        """One expert's kernel: (out, in / groups, k, k)."""
        return (self.out_channels, self.in_channels // self.groups, self.kernel, self.kernel)

    def tensors(self) -> dict[str, Shape]:
        return {f"{self.name}.weight": (self.experts, *self.expert_shape)}


@dataclass(frozen=True, kw_only=True, slots=True)
class Slice(_Op):
    """Channels ``start`` to ``stop`` (exclusive) of the input: one group of a split conv (MixNet)."""

    op: Literal["slice"] = "slice"
    start: int
    stop: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Concat(_Op):
    """The inputs concatenated along channels, in order: the groups of a split conv back together."""

    op: Literal["concat"] = "concat"


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchNorm(_Op):
    """Batch norm over channels. Momentum in the PyTorch convention: running = (1 - m) * running + m * batch."""

    op: Literal["batch_norm"] = "batch_norm"
    channels: int
    eps: float
    momentum: float  # PyTorch convention; Keras/TF momentum is 1 - this
    folds_into: str | None  # the conv this BN directly follows as that conv's only reader: inference may fold it

    def tensors(self) -> dict[str, Shape]:
        return {f"{self.name}.{suffix}": (self.channels,) for suffix in _BN_SUFFIXES}


@dataclass(frozen=True, kw_only=True, slots=True)
class Activation(_Op):
    """Elementwise ``function``: silu x*sigmoid(x); hard_swish x*relu6(x+3)/6; hard_sigmoid relu6(x+3)/6."""

    op: Literal["activation"] = "activation"
    function: Function


@dataclass(frozen=True, kw_only=True, slots=True)
class GlobalAvgPool(_Op):
    """Mean over height and width, kept as a 1x1 map: (C, H, W) -> (C, 1, 1)."""

    op: Literal["global_avg_pool"] = "global_avg_pool"


@dataclass(frozen=True, kw_only=True, slots=True)
class Flatten(_Op):
    """(C, 1, 1) -> (C,)."""

    op: Literal["flatten"] = "flatten"


@dataclass(frozen=True, kw_only=True, slots=True)
class Mul(_Op):
    """inputs[0] * inputs[1], the second broadcast over height and width (SE's rescale)."""

    op: Literal["mul"] = "mul"


@dataclass(frozen=True, kw_only=True, slots=True)
class Add(_Op):
    """inputs[0] + inputs[1] (the residual connection)."""

    op: Literal["add"] = "add"


@dataclass(frozen=True, kw_only=True, slots=True)
class DropPath(_Op):
    """Stochastic depth, training only: each sample is zeroed with probability ``rate``, the rest scaled by
    1 / (1 - rate). Identity in inference."""

    op: Literal["drop_path"] = "drop_path"
    rate: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Dropout(_Op):
    """Element dropout, training only, scaled by 1 / (1 - rate). Identity in inference."""

    op: Literal["dropout"] = "dropout"
    rate: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Linear(_Op):
    """Fully connected: y = x W^T + b, W of shape (out_features, in_features)."""

    op: Literal["linear"] = "linear"
    in_features: int
    out_features: int
    bias: bool

    def tensors(self) -> dict[str, Shape]:
        out = {f"{self.name}.weight": (self.out_features, self.in_features)}
        if self.bias:
            out[f"{self.name}.bias"] = (self.out_features,)
        return out


Op = Annotated[
    Conv
    | BatchNorm
    | Activation
    | GlobalAvgPool
    | Flatten
    | Mul
    | Add
    | DropPath
    | Dropout
    | Linear
    | CondConv
    | Slice
    | Concat,
    Field(discriminator="op"),
]

#: The op kinds that own canonical tensors: those whose `tensors` is not the empty default.
WEIGHTED_KINDS: tuple[type[_Op], ...] = tuple(
    kind for kind in get_args(get_args(Op)[0]) if kind.tensors is not _Op.tensors
)


@dataclass(frozen=True, kw_only=True, slots=True)
class LoweredNetwork:
    """A whole network as ops in forward order; JSON-serialisable (`to_json`, `from_json`)."""

    name: str
    input_shape: Shape  # (C, H, W) of one input image, at the spec's evaluation resolution
    normalization: Normalization
    ops: tuple[Op, ...]  # a tuple: `lower` hands every caller the same network (`ModelIR.derived`)
    features: str  # the op whose output is the final feature map, before pooling
    output: str  # the op whose output is the logits (a backbone's: its last op)
    # Feature maps a backbone returns, in forward order (`specdsl.passes.features`); empty: a classifier, whose
    # JSON form then has no "taps" key at all, so it hashes and emits exactly as before taps existed.
    taps: tuple[Tap, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.ops, tuple):  # given as a list: kept as a tuple all the same
            object.__setattr__(self, "ops", tuple(self.ops))

    def tensors(self) -> dict[str, Shape]:
        """Every canonical tensor name with its shape, in forward order."""
        return {name: shape for op in self.ops for name, shape in op.tensors().items()}

    def shapes(self) -> dict[str, Shape]:
        """Output shape of every op, and of ``"input"``."""
        return {INPUT: self.input_shape, **{op.name: op.out_shape for op in self.ops}}

    def to_json(self) -> dict[str, Any]:
        """The JSON form: plain dicts and lists, one dict per op with its kind under ``"op"``."""
        data = _adapter().dump_python(self, mode="json")
        if not self.taps:
            del data["taps"]
        return data

    def sha256(self) -> str:
        """SHA-256 of the JSON form with sorted keys and no spaces: identifies this exact network (every op,
        name and number) in the metadata of emitted files."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_json(cls, data: dict[str, Any] | str | bytes) -> LoweredNetwork:
        """Parse and validate the JSON form (a dict or text)."""
        adapter = _adapter()
        return adapter.validate_json(data) if isinstance(data, str | bytes) else adapter.validate_python(data)


@functools.cache
def _adapter() -> TypeAdapter[LoweredNetwork]:
    return TypeAdapter(LoweredNetwork)


def block_prefix(block: Block) -> str:
    """The canonical name prefix of a block's ops: ``stages.<stage>.<index>``."""
    return f"stages.{block.stage}.{block.index}"


def split_channels(channels: int, groups: int) -> list[int]:
    """Channels per group of a split conv: equal shares, the remainder to the first (MixNet's _split_channels)."""
    sizes = [channels // groups] * groups
    sizes[0] += channels - sum(sizes)
    return sizes


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding of one spatial dim as (before, after); the extra pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Builder:
    """Appends ops, tracking each one's output shape, so shapes are computed once and checked."""

    def __init__(self, ir: ModelIR) -> None:
        self.ir = ir
        self.ops: list[_Op] = []
        self.shapes: dict[str, Shape] = {INPUT: (ir.in_channels, ir.resolution, ir.resolution)}
        self.block: int | None = None
        self._windows: dict[tuple[int, int, int, int], tuple[Pads, bool, int, int]] = {}

    def append(self, op: _Op) -> str:
        self.ops.append(op)
        self.shapes[op.name] = op.out_shape
        return op.name

    def add(self, op_type: type[_Op], name: str, inputs: tuple[str, ...], out_shape: Shape, **fields: object) -> str:
        return self.append(op_type(name=name, inputs=inputs, out_shape=out_shape, block=self.block, **fields))

    def window(self, height: int, width: int, kernel: int, stride: int) -> tuple[Pads, bool, int, int]:
        """A window's pads (per `Padding`), whether they are SAME's for this size only, and the output height and
        width; computed once per geometry, which the repeated blocks of a stage share."""
        key = (height, width, kernel, stride)
        known = self._windows.get(key)
        if known is not None:
            return known
        if self.ir.padding == Padding.SYMMETRIC:
            pad = (kernel - 1) // 2
            pads, dynamic = (pad, pad, pad, pad), False
        else:  # TF SAME: symmetric and size-independent for stride 1 and an odd kernel only
            pads = (*same_pads(height, kernel, stride), *same_pads(width, kernel, stride))
            dynamic = stride > 1 or kernel % 2 == 0
        top, bottom, left, right = pads
        known = (
            pads,
            dynamic,
            (height + top + bottom - kernel) // stride + 1,
            (width + left + right - kernel) // stride + 1,
        )
        self._windows[key] = known
        return known

    def _windowed(
        self,
        op_type: type[_Op],
        name: str,
        inputs: tuple[str, ...],
        out: int,
        kernel: int,
        stride: int,
        **fields: object,
    ) -> str:
        """A conv-like op over ``inputs[0]``: its pads, output shape and the fields all convs share."""
        in_shape = self.shapes[inputs[0]]
        pads, dynamic, height, width = self.window(in_shape[1], in_shape[2], kernel, stride)
        return self.append(
            op_type(
                name=name,
                inputs=inputs,
                out_shape=(out, height, width),
                block=self.block,
                in_shape=in_shape,
                in_channels=in_shape[0],
                out_channels=out,
                kernel=kernel,
                stride=stride,
                pads=pads,
                dynamic_padding=dynamic,
                **fields,
            )
        )

    def conv(self, name: str, x: str, out: int, kernel: int, stride: int = 1, *, groups: int = 1, bias: bool = False):
        return self._windowed(Conv, name, (x,), out, kernel, stride, groups=groups, bias=bias)

    def cond_conv(self, name: str, x: str, routing: str, out: int, kernel: int, stride: int, groups: int) -> str:
        experts = self.shapes[routing][0]
        return self._windowed(CondConv, name, (x, routing), out, kernel, stride, groups=groups, experts=experts)

    def same_shape(self, op_type: type[_Op], name: str, x: str, **fields: object) -> str:
        return self.append(op_type(name=name, inputs=(x,), out_shape=self.shapes[x], block=self.block, **fields))

    def split_conv(
        self,
        prefix: str,
        x: str,
        out: int,
        kernels: tuple[int, ...],
        stride: int,
        *,
        depthwise: bool,
        routing: str | None,
        bias: bool = False,
    ) -> tuple[str, str | None]:
        """The conv of a conv-BN unit: ``<prefix>.conv``, a CondConv when ``routing`` is given, or with several
        ``kernels`` a split conv (``<prefix>.split.i`` -> ``<prefix>.conv.i`` -> ``<prefix>.concat``).

        Returns its output and the conv a following BN may fold into (None for split and CondConv).
        """
        channels = self.shapes[x][0]
        if (routing is not None or len(kernels) > 1) and bias:
            raise ValueError(f"{prefix}: only a plain conv has a bias")
        if len(kernels) == 1:
            groups = channels if depthwise else 1
            if routing is not None:
                return self.cond_conv(f"{prefix}.conv", x, routing, out, kernels[0], stride, groups), None
            conv = self.conv(f"{prefix}.conv", x, out, kernels[0], stride, groups=groups, bias=bias)
            return conv, conv
        if routing is not None:
            raise ValueError(f"{prefix}: CondConv of a split conv is not defined")
        parts, start = [], 0
        for index, (kernel, group_in, group_out) in enumerate(
            zip(kernels, split_channels(channels, len(kernels)), split_channels(out, len(kernels)), strict=True)
        ):
            piece_shape = (group_in, *self.shapes[x][1:])
            piece = self.add(Slice, f"{prefix}.split.{index}", (x,), piece_shape, start=start, stop=start + group_in)
            groups = group_in if depthwise else 1
            parts.append(self.conv(f"{prefix}.conv.{index}", piece, group_out, kernel, stride, groups=groups))
            start += group_in
        height, width = self.shapes[parts[0]][1:]
        return self.add(Concat, f"{prefix}.concat", tuple(parts), (out, height, width)), None

    def conv_bn(
        self,
        prefix: str,
        x: str,
        out: int,
        kernels: tuple[int, ...],
        stride: int,
        act: ActivationKind | None,
        *,
        depthwise: bool = False,
        routing: str | None = None,
        bias: bool = False,
    ) -> str:
        """conv -> BN [-> activation], named ``<prefix>.conv`` (see `split_conv`), ``<prefix>.bn``, ``<prefix>.act``."""
        conv, folds = self.split_conv(prefix, x, out, kernels, stride, depthwise=depthwise, routing=routing, bias=bias)
        norm, shape = self.ir.batch_norm, self.shapes[conv]
        x = self.append(
            BatchNorm(
                name=f"{prefix}.bn",
                inputs=(conv,),
                out_shape=shape,
                block=self.block,
                channels=out,
                eps=norm.eps,
                momentum=norm.momentum,
                folds_into=folds,
            )
        )
        if act is None:
            return x
        return self.append(
            Activation(name=f"{prefix}.act", inputs=(x,), out_shape=shape, block=self.block, function=str(act))
        )

    def routing(self, prefix: str, x: str, experts: int) -> str:
        """CondConv routing weights of a block: sigmoid(Linear(global mean of ``x``)), (experts,) per sample."""
        channels = self.shapes[x][0]
        pooled = self.add(GlobalAvgPool, f"{prefix}.pool", (x,), (channels, 1, 1))
        flat = self.add(Flatten, f"{prefix}.flatten", (pooled,), (channels,))
        fc = self.add(
            Linear, f"{prefix}.fc", (flat,), (experts,), in_features=channels, out_features=experts, bias=True
        )
        return self.same_shape(Activation, f"{prefix}.gate", fc, function="sigmoid")

    def squeeze_excite(self, prefix: str, x: str, se_channels: int, act: ActivationKind, gate: str) -> str:
        """Global mean -> 1x1 conv (bias) -> act -> 1x1 conv (bias) -> gate -> rescale ``x``."""
        channels = self.shapes[x][0]
        pooled = self.add(GlobalAvgPool, f"{prefix}.pool", (x,), (channels, 1, 1))
        reduced = self.conv(f"{prefix}.reduce", pooled, se_channels, 1, bias=True)
        reduced = self.same_shape(Activation, f"{prefix}.act", reduced, function=str(act))
        gated = self.conv(f"{prefix}.expand", reduced, channels, 1, bias=True)
        gated = self.same_shape(Activation, f"{prefix}.gate", gated, function=gate)
        return self.add(Mul, f"{prefix}.scale", (x, gated), self.shapes[x])

    def block_ops(self, block: Block, x: str) -> str:
        """One block, per the semantics stated in `specdsl.ir`."""
        self.block = block.global_index
        prefix, act, mid = block_prefix(block), block.activation, block.mid_channels
        identity = x
        if block.kind == BlockKind.CONV:
            x = self.conv_bn(f"{prefix}.spatial", x, block.out_channels, block.spatial_kernels, block.stride, act)
        else:
            spatial_stride = block.stride if block.stride_at == "spatial" else 1
            routing = None if block.experts is None else self.routing(f"{prefix}.routing", x, block.experts)
            if block.kind == BlockKind.MBCONV:
                if block.expand_channels is not None:
                    pointwise = (1,) * block.expand_groups
                    x = self.conv_bn(f"{prefix}.expand", x, mid, pointwise, 1, act, routing=routing)
                x = self.conv_bn(
                    f"{prefix}.spatial",
                    x,
                    mid,
                    block.spatial_kernels,
                    spatial_stride,
                    act,
                    depthwise=True,
                    routing=routing,
                )
            else:  # fused: the k x k conv does the expansion
                x = self.conv_bn(f"{prefix}.spatial", x, mid, block.spatial_kernels, spatial_stride, act)
            if block.se_channels is not None:
                x = self.squeeze_excite(f"{prefix}.se", x, block.se_channels, block.se_activation or act, block.se_gate)
            project_stride = block.stride if block.stride_at == "project" else 1
            pointwise = (1,) * block.project_groups
            x = self.conv_bn(
                f"{prefix}.project", x, block.out_channels, pointwise, project_stride, None, routing=routing
            )
        if block.residual:
            x = self.same_shape(DropPath, f"{prefix}.drop_path", x, rate=block.drop_path)
            x = self.add(Add, f"{prefix}.add", (identity, x), self.shapes[x])
        expected = (block.out_channels, block.output_size, block.output_size)
        if self.shapes[x] != expected:
            raise ValueError(f"{prefix}: lowered output {self.shapes[x]}, the IR says {expected}")
        self.block = None
        return x


def lower(ir: ModelIR, *, features: Features = None, out_indices: Sequence[int] | None = None) -> LoweredNetwork:
    """The network of ``ir`` as ops in forward order (see the module docstring).

    ``features`` (``"strides"``, ``"expansion"`` or op names / ``stages.N``) and ``out_indices`` make it a
    backbone: taps marked, the head dropped (`specdsl.passes.features`). Lowered once per IR and selection and
    kept on the IR (`ModelIR.derived`): resolve's memory check, the analysis and every backend read the same,
    immutable network."""
    if not isinstance(ir, ModelIR):
        raise SpecError(f"ir must be a ModelIR (from specdsl.load), got {type(ir).__name__}", path="specdsl.lower")
    whole = ir.derived(("lower",), lambda: _network(ir))
    if features is None and out_indices is None:
        return whole
    key = _selection_key(features, out_indices)
    if key is None:  # not plain names and indices: `select` says what is wrong with it
        return select(whole, ir, features, out_indices=out_indices)
    return ir.derived(("lower", *key), lambda: select(whole, ir, features, out_indices=out_indices))


def _selection_key(features: Features, out_indices: Sequence[int] | None) -> tuple[object, object] | None:
    """A selection as a cache key (a list and a tuple of names select alike); None unless it is names and ints."""
    names: object = features
    if not (features is None or isinstance(features, str)):
        if not isinstance(features, Sequence) or any(type(name) is not str for name in features):
            return None
        names = tuple(features)
    indices: object = out_indices
    if out_indices is not None:
        if isinstance(out_indices, str | bytes) or not isinstance(out_indices, Sequence):
            return None
        if any(type(index) is not int for index in out_indices):  # True == 1, but select refuses True
            return None
        indices = tuple(out_indices)
    return names, indices


def _network(ir: ModelIR) -> LoweredNetwork:
    """The whole network (stem, blocks, head) of ``ir``: what `lower` computes once per IR."""
    builder = _Builder(ir)
    stem = ir.stem
    x = builder.conv_bn("stem", INPUT, stem.out_channels, (stem.kernel,), stem.stride, stem.activation)
    for block in ir.blocks:
        x = builder.block_ops(block, x)
    head = ir.head
    if head.conv_channels is not None and head.form == "conv_pool":
        x = builder.conv_bn("head", x, head.conv_channels, (1,), 1, head.activation, bias=head.bias)
    final_map = x
    x = builder.add(GlobalAvgPool, "head.pool", (x,), (builder.shapes[x][0], 1, 1))
    if head.conv_channels is not None and head.form == "pool_conv":  # MobileNetV3: no BN
        x = builder.conv("head.conv", x, head.conv_channels, 1, bias=head.bias)
        x = builder.same_shape(Activation, "head.act", x, function=str(head.activation))
    x = builder.add(Flatten, "head.flatten", (x,), (head.features,))
    x = builder.same_shape(Dropout, "head.dropout", x, rate=head.dropout)
    x = builder.add(
        Linear, "classifier", (x,), (head.classes,), in_features=head.features, out_features=head.classes, bias=True
    )
    return LoweredNetwork(
        name=ir.name,
        input_shape=builder.shapes[INPUT],
        normalization=ir.normalization,
        ops=builder.ops,
        features=final_map,
        output=x,
    )


def lower_for_build(ir: ModelIR, features: Features = None, out_indices: Sequence[int] | None = None) -> LoweredNetwork:
    """What a backend builds: the backbone ``features`` / ``out_indices`` select, else the one the spec's ``outputs``
    section declares (a bad declaration located there), else the whole network."""
    declared = ir.spec.outputs
    if features is not None or out_indices is not None or declared.features is None:
        return lower(ir, features=features, out_indices=out_indices)
    try:
        return lower(ir, features=declared.features, out_indices=declared.out_indices)
    except SpecError as error:
        key = "outputs.out_indices" if error.path == "out_indices" else "outputs.features"
        raise SpecError(error.message.split(": ", 1)[-1], ir.spec.span(key), hint=error.hint) from None


def consumers(net: LoweredNetwork) -> dict[str, list[str]]:
    """For each op (and ``"input"``), the ops that read its output, in forward order."""
    readers: dict[str, list[str]] = {INPUT: [], **{op.name: [] for op in net.ops}}
    for op in net.ops:
        for name in op.inputs:
            readers[name].append(op.name)
    return readers


def weighted_ops(net: LoweredNetwork) -> Iterator[_Op]:
    """The ops that own canonical tensors, in forward order."""
    return (op for op in net.ops if op.tensors())


def check(net: LoweredNetwork) -> LoweredNetwork:
    """Validate a network fully (field types, DAG order, unique names, no name a '.'-prefix of another, BN folds)
    and return it."""
    net = LoweredNetwork.from_json(net.to_json())
    seen = {INPUT}
    readers = consumers(net)
    for op in net.ops:
        if op.name in seen:
            raise ValueError(f"duplicate op name {op.name!r}")
        missing = [name for name in op.inputs if name not in seen]
        if missing:
            raise ValueError(f"{op.name} reads {missing[0]!r} before it is computed")
        seen.add(op.name)
        if isinstance(op, BatchNorm) and op.folds_into is not None and readers[op.folds_into] != [op.name]:
            raise ValueError(f"{op.name} cannot fold into {op.folds_into}")
    if net.output != net.ops[-1].name or net.features not in seen:
        raise ValueError("output must be the last op and features an op of the network")
    shapes = net.shapes()
    for tap in net.taps:
        if tap.name not in seen or (tap.channels, *tap.shape[1:]) != shapes[tap.name]:
            raise ValueError(f"tap {tap.name!r} is not an op of the network with shape {tap.shape}")
    for name in seen:  # backends place modules in a tree by name: a leaf cannot also be a branch
        parts = name.split(".")
        clash = next((".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in seen), None)
        if clash is not None:
            raise ValueError(f"op name {clash!r} is a prefix of op name {name!r}")
    return net
