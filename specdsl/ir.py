"""The resolved network: the single source of truth that every backend translates.

Everything a backend needs is decided here, after scaling: which convolutions a
block has, their widths, the SE width, the activation, whether a residual
exists, the stochastic-depth rate and the feature-map size. A backend that asks
"what does this block mean?" reads these fields and nothing else.

Block structure, by kind (BN = batch norm, act = the block's activation):

* ``mbconv``: [1x1 conv to ``expand_channels``, BN, act] -> depthwise kxk conv
  (stride), BN, act -> [SE] -> 1x1 conv to ``out_channels``, BN.
  The bracketed expansion exists iff ``expand_channels`` is not None.
* ``fused``: kxk conv (stride) to ``expand_channels``, BN, act -> [SE] ->
  1x1 conv to ``out_channels``, BN. With ``stride_at = "project"`` the kxk conv
  has stride 1 and the 1x1 projection strides instead (EfficientNet-EdgeTPU).
* ``conv``: kxk conv (stride) to ``out_channels``, BN, act.

SE (when ``se_channels`` is set): global mean -> 1x1 conv with bias to
``se_channels`` -> ``se_activation`` (default: the block's) -> 1x1 conv with bias back
-> ``se_gate`` -> multiply.
With ``residual`` the block output is ``x + drop_path(f(x))``.

Split convs (MixNet): a conv with several channel groups (``mixed_kernels``,
``expand_groups``, ``project_groups``) splits its input channels into that many
groups, equal but for the remainder, which goes to the first; it splits its output
channels the same way, and group i's own conv maps input group i to output group i.
The outputs are concatenated in order. A depthwise conv stays depthwise in each group.

CondConv (``experts`` set): routing r = sigmoid(Linear(global mean of the block input)),
one weight per expert; the expansion, depthwise and projection convs of the block use,
per sample n, the kernel sum_e r[n, e] * W_e (Yang et al. 2019).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from specdsl.spec import SpecDocument, TrainingRecipe
from specdsl.vocabulary import Activation, BlockKind, Padding

Gate = Literal["sigmoid", "hard_sigmoid"]
T = TypeVar("T")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BatchNorm(_Frozen):
    """Momentum in the PyTorch convention: running = (1 - momentum) * running + momentum * batch."""

    eps: float
    momentum: float


class Normalization(_Frozen):
    """What the network expects of its input: (pixel / 255 - mean) / std, per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


class Stem(_Frozen):
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    activation: Activation
    input_size: int
    output_size: int


class Block(_Frozen):
    stage: int = Field(description="0-based stage index")
    index: int = Field(description="0-based index within the stage")
    global_index: int = Field(description="0-based index over all blocks")
    kind: BlockKind
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    expand_channels: int | None = Field(description="width after the expansion conv; None: no expansion conv")
    se_channels: int | None = Field(description="SE bottleneck width; None: no SE")
    activation: Activation
    residual: bool
    drop_path: float = Field(description="stochastic-depth drop probability of this block")
    input_size: int = Field(description="feature-map height/width at the block input")
    output_size: int
    se_gate: Gate = Field("sigmoid", description="the SE gate function")
    se_activation: Activation | None = Field(None, description="the activation inside SE; None: `activation`")
    mixed_kernels: tuple[int, ...] | None = Field(
        None,
        description="MixConv: the depthwise conv split into channel groups, one kernel each; `kernel` is the first",
    )
    expand_groups: int = Field(1, description="channel groups of the 1x1 expansion conv (a split conv when > 1)")
    project_groups: int = Field(1, description="channel groups of the 1x1 projection conv (a split conv when > 1)")
    experts: int | None = Field(None, description="CondConv experts of the expansion, depthwise and projection convs")
    stride_at: Literal["spatial", "project"] = Field(
        "spatial", description="which conv of a fused block strides: the k x k conv or the 1x1 projection"
    )
    line: int | None = Field(
        None, description="index of the spec's stage line this block repeats (its expansion and SE ratios, as written)"
    )

    @model_validator(mode="after")
    def _structure(self) -> Block:
        if self.kind is BlockKind.CONV and (self.expand_channels is not None or self.se_channels is not None):
            raise ValueError("a 'conv' block has neither an expansion nor SE")
        if self.kind is BlockKind.FUSED and self.expand_channels is None:
            raise ValueError("a 'fused' block always has its expanding k x k conv")
        if self.residual and (self.stride != 1 or self.in_channels != self.out_channels):
            raise ValueError("a residual needs stride 1 and equal input and output widths")
        if self.mixed_kernels is not None and (len(self.mixed_kernels) < 2 or self.mixed_kernels[0] != self.kernel):
            raise ValueError("mixed_kernels lists two or more kernels, the first being `kernel`")
        if (self.mixed_kernels is not None or self.expand_groups > 1) and self.kind is not BlockKind.MBCONV:
            raise ValueError("mixed kernels and a grouped expansion belong to mbconv blocks")
        if self.stride_at == "project" and self.kind is not BlockKind.FUSED:
            raise ValueError("only a fused block can stride on its projection")
        if self.project_groups > 1 and self.kind is BlockKind.CONV:
            raise ValueError("a 'conv' block has no projection to group")
        if self.experts is not None and self.kind is not BlockKind.MBCONV:
            raise ValueError("CondConv experts belong to mbconv blocks")
        return self

    @property
    def spatial_kernels(self) -> tuple[int, ...]:
        """Kernel of each channel group of the k x k conv: one entry unless it is a MixConv."""
        return self.mixed_kernels or (self.kernel,)

    @property
    def mid_channels(self) -> int:
        """Width seen by the spatial conv output and by SE."""
        return self.expand_channels if self.expand_channels is not None else self.in_channels


class Stage(_Frozen):
    index: int
    blocks: list[Block]


class Head(_Frozen):
    in_channels: int
    conv_channels: int | None = Field(description="1x1 head conv width; None: no head conv")
    activation: Activation
    form: Literal["conv_pool", "pool_conv"] = Field(
        "conv_pool", description="conv_pool: conv, BN, act, then pool; pool_conv: pool, then conv, act (no BN)"
    )
    bias: bool = Field(False, description="the head conv has a bias")
    pool: Literal["avg"]
    dropout: float
    classes: int
    input_size: int

    @property
    def features(self) -> int:
        return self.conv_channels if self.conv_channels is not None else self.in_channels


class _Derived:
    """Values computed from one `ModelIR` (its lowerings), kept on it so that each is computed once per IR.

    Not part of the IR's value: any two compare equal, so IR equality ignores them. It belongs to one IR object:
    pydantic's ``model_copy`` (a shallow copy, then changed fields) shares this container with the copy, whose
    values then miss because the copy is not the owner; a deep copy or a pickle starts empty."""

    __slots__ = ("owner", "values")

    def __init__(self, owner: ModelIR | None = None) -> None:
        self.owner = None if owner is None else weakref.ref(owner)
        self.values: dict[Hashable, tuple[tuple[Any, ...], Any]] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Derived)

    __hash__ = None  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict[int, Any]) -> _Derived:
        return _Derived()

    def __reduce__(self) -> tuple[type[_Derived], tuple[()]]:
        return _Derived, ()


class ModelIR(_Frozen):
    """A fully resolved, scaled network plus the document it came from."""

    _derived: _Derived = PrivateAttr(default_factory=_Derived)

    name: str
    in_channels: int
    resolution: int = Field(description="evaluation input size (square)")
    train_resolution: int
    normalization: Normalization
    padding: Padding
    batch_norm: BatchNorm
    stem: Stem
    stages: list[Stage]
    head: Head
    training: TrainingRecipe
    spec: SpecDocument = Field(description="the merged, unscaled document this network was resolved from")

    @property
    def blocks(self) -> list[Block]:
        return [block for stage in self.stages for block in stage.blocks]

    def network(self) -> dict:
        """The architecture alone (no name, no source document): equal networks compare equal."""
        blocks = {"__all__": {"blocks": {"__all__": {"line"}}}}  # where a block was written is not what it is
        return self.model_dump(exclude={"name": True, "spec": True, "training": True, "stages": blocks})

    def derived(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` for this network, computed once per ``key`` (`specdsl.lower` keeps its lowerings here).

        A value is reused only while the IR holds the same stages and blocks it was computed from: every field is
        frozen, but ``stages`` and each stage's ``blocks`` are lists that can be changed in place."""
        derived = self._derived
        if derived.owner is None or derived.owner() is not self:  # new, or inherited by a copy
            derived = self._derived = _Derived(self)
        structure = (tuple(self.stages), *(tuple(stage.blocks) for stage in self.stages))
        hit = derived.values.get(key)
        if hit is not None and hit[0] == structure:
            return hit[1]
        value = compute()
        derived.values[key] = (structure, value)
        return value

    def ratios(self, block: Block) -> tuple[float | None, float | None]:
        """The expansion and SE ratios ``block``'s stage line gives, as written (None: no expansion conv, no SE)."""
        if block.line is None:
            return None, None
        line = self.spec.stages[block.line]
        return (
            None if block.expand_channels is None else line.expansion,
            None if block.se_channels is None else line.se_ratio,
        )
