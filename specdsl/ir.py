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
  1x1 conv to ``out_channels``, BN.
* ``conv``: kxk conv (stride) to ``out_channels``, BN, act.

SE (when ``se_channels`` is set): global mean -> 1x1 conv with bias to
``se_channels`` -> act -> 1x1 conv with bias back -> sigmoid -> multiply.
With ``residual`` the block output is ``x + drop_path(f(x))``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from specdsl.spec import SpecDocument, TrainingRecipe
from specdsl.vocabulary import Activation, BlockKind, Padding


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

    @model_validator(mode="after")
    def _structure(self) -> Block:
        if self.kind is BlockKind.CONV and (self.expand_channels is not None or self.se_channels is not None):
            raise ValueError("a 'conv' block has neither an expansion nor SE")
        if self.kind is BlockKind.FUSED and self.expand_channels is None:
            raise ValueError("a 'fused' block always has its expanding k x k conv")
        if self.residual and (self.stride != 1 or self.in_channels != self.out_channels):
            raise ValueError("a residual needs stride 1 and equal input and output widths")
        return self

    @property
    def mid_channels(self) -> int:
        """Width seen by the spatial conv output and by SE."""
        return self.expand_channels if self.expand_channels is not None else self.in_channels


class Stage(_Frozen):
    index: int
    blocks: list[Block]


class Head(_Frozen):
    in_channels: int
    conv_channels: int | None = Field(description="1x1 conv width before pooling; None: no head conv")
    activation: Activation
    pool: Literal["avg"]
    dropout: float
    classes: int
    input_size: int

    @property
    def features(self) -> int:
        return self.conv_channels if self.conv_channels is not None else self.in_channels


class ModelIR(_Frozen):
    """A fully resolved, scaled network plus the document it came from."""

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
        return self.model_dump(exclude={"name", "spec", "training"})
