"""The spec document: what a ``.spec`` file says, after ``extends`` is merged, before scaling.

Each section is a pydantic model whose fields *are* the language reference:
name, type, default, bounds and description live here once, and the parser,
the formatter and ``docs/language.md`` all read them from here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from specdsl import limits
from specdsl.errors import SourceSpan
from specdsl.vocabulary import Activation, BlockKind, Dialect, Padding

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSection(_Section):
    channels: int = Field(3, ge=1, le=limits.MAX_INPUT_CHANNELS, description="input image channels")
    resolution: int = Field(
        ge=limits.MIN_RESOLUTION, le=limits.MAX_RESOLUTION, description="evaluation image size (square), pixels"
    )
    train_resolution: int | None = Field(
        None,
        ge=limits.MIN_RESOLUTION,
        le=limits.MAX_RESOLUTION,
        description="training image size when it differs from `resolution` (EfficientNetV2)",
    )
    mean: list[float] | None = Field(
        None,
        description="per-channel mean of pixel/255 the network expects removed; default ImageNet's for RGB, else 0.5",
    )
    std: list[float] | None = Field(
        None, description="per-channel std of pixel/255 the network expects divided out; default ImageNet's, else 0.5"
    )

    @model_validator(mode="after")
    def _normalization(self) -> InputSection:
        for key, low in (("mean", -10.0), ("std", 1e-6)):
            values = getattr(self, key)
            if values is not None and len(values) != self.channels:
                raise ValueError(f"{key}: {len(values)} values for {self.channels} input channels")
            if values is not None and not all(low <= value <= 10.0 for value in values):
                raise ValueError(f"{key} values must be in [{low:g}, 10]")
        return self


class StemSection(_Section):
    channels: int = Field(ge=1, le=limits.MAX_CHANNELS, description="stem conv width before width scaling")
    kernel: int = Field(3, ge=1, le=limits.MAX_KERNEL, description="stem conv kernel (odd)")
    stride: int = Field(2, ge=1, le=2, description="stem conv stride")
    activation: Activation | None = Field(None, description="defaults.activation when unset")


class HeadSection(_Section):
    channels: int | None = Field(
        1280, ge=1, le=limits.MAX_CHANNELS, description="1x1 head conv width before width scaling; `none` for no conv"
    )
    pool: Literal["avg"] = Field("avg", description="global pooling")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout before the classifier")
    classes: int = Field(1000, ge=1, le=limits.MAX_CLASSES, description="classifier outputs")
    activation: Activation | None = Field(None, description="defaults.activation when unset")
    form: Literal["conv_pool", "pool_conv"] = Field(
        "conv_pool",
        description=(
            "conv_pool: 1x1 conv, BN, act, then pool (EfficientNet); "
            "pool_conv: pool, then 1x1 conv, act, no BN (MobileNetV3's efficient head)"
        ),
    )
    bias: bool = Field(False, description="the head conv has a bias (MobileNetV3: true)")

    @model_validator(mode="after")
    def _conv_options(self) -> HeadSection:
        if self.channels is None and (self.bias or self.form != "conv_pool"):
            raise ValueError("head.bias and head.form describe the head conv; with channels = none there is none")
        return self


class DefaultsSection(_Section):
    activation: Activation = Field(Activation.SILU, description="activation of every block unless overridden")
    bn_eps: float = Field(1e-3, gt=0.0, le=1.0, description="batch-norm epsilon")
    bn_momentum: float = Field(0.99, gt=0.0, lt=1.0, description="batch-norm momentum, in `bn_convention`")
    bn_convention: Literal["tf", "torch"] = Field(
        "tf",
        description=(
            "tf: running = m*running + (1-m)*batch (Keras, 0.99); torch: running = (1-m)*running + m*batch (0.01)"
        ),
    )
    padding: Padding = Field(Padding.SAME, description="same: TF SAME (asymmetric); symmetric: (k-1)//2")
    drop_path: float = Field(
        0.2, ge=0.0, lt=1.0, description="stochastic depth; block i of N drops with drop_path * i / N"
    )
    se_gate: Literal["sigmoid", "hard_sigmoid"] = Field(
        "sigmoid", description="SE gate function (MobileNetV3: hard_sigmoid)"
    )
    se_activation: Activation | None = Field(
        None, description="activation inside SE, between its two 1x1 convs; unset: the block's (MobileNetV3: relu)"
    )
    se_width: Literal["input", "expanded"] = Field(
        "input",
        description=(
            "SE bottleneck width from the block input (the dialect's rule, EfficientNet) or from the expanded "
            "width: make_divisible(expanded * se, se_divisor) (MobileNetV3)"
        ),
    )
    se_divisor: int = Field(
        1, ge=1, le=256, description="with se_width = expanded: SE widths round to multiples of this (MobileNetV3: 8)"
    )
    fused_stride: Literal["spatial", "project"] = Field(
        "spatial",
        description=(
            "where a Fused-MBConv block strides: its k x k conv (EfficientNetV2) or its 1x1 projection "
            "(EfficientNet-EdgeTPU, as tensorflow/tpu's MBConvBlockWithoutDepthwise)"
        ),
    )

    @model_validator(mode="after")
    def _se_divisor(self) -> DefaultsSection:
        if self.se_divisor != 1 and self.se_width != "expanded":
            raise ValueError("se_divisor rounds expanded-width SE only: set se_width = expanded or drop it")
        return self


class ScalingSection(_Section):
    rule: Literal["compound", "v2"] = Field(
        "compound",
        description="compound: every stage's depth grows alike; v2: EfficientNetV2 non-uniform `stage_growth`",
    )
    alpha: float = Field(1.2, gt=0.0, le=limits.MAX_MULTIPLIER, description="depth growth per unit phi")
    beta: float = Field(1.1, gt=0.0, le=limits.MAX_MULTIPLIER, description="width growth per unit phi")
    gamma: float = Field(1.15, gt=0.0, le=limits.MAX_MULTIPLIER, description="resolution growth per unit phi")
    width: float = Field(1.0, gt=0.0, le=limits.MAX_MULTIPLIER, description="width multiplier applied to channels")
    depth: float = Field(1.0, gt=0.0, le=limits.MAX_MULTIPLIER, description="depth multiplier applied to repeats")
    divisor: int = Field(8, ge=1, le=256, description="channel widths round to multiples of this")
    round_up_90: bool = Field(
        True, description="V1 rule: add `divisor` when rounding lost more than 10% (off for EfficientNetV2)"
    )
    scale_stem: bool = Field(True, description="apply the width multiplier to the stem")
    scale_head: bool = Field(True, description="apply the width multiplier to the head conv")
    resolution_multiple: int = Field(4, ge=1, le=256, description="scaled resolutions round to multiples of this")
    stage_depth: list[float] | None = Field(
        None, description="per-stage depth multipliers on top of `depth`, one per stage (default all 1)"
    )
    stage_growth: list[float] | None = Field(
        None,
        description="v2 only: per-stage depth growth; scaling by phi multiplies stage i's depth by growth_i^phi",
    )
    max_resolution: int | None = Field(
        None, ge=limits.MIN_RESOLUTION, le=limits.MAX_RESOLUTION, description="cap on scaled resolutions (V2: 480)"
    )
    depth_trunc: Literal["ceil", "round"] = Field(
        "ceil",
        description="a stage's scaled repeats: ceil(depth * r) (EfficientNet) or max(1, round(depth * r)) (MixNet-M/L)",
    )
    fix_first_last: bool = Field(
        False, description="the first and last stages keep their written repeats at any depth (EfficientNet-Lite)"
    )
    experts_multiplier: int = Field(
        1, ge=1, le=limits.MAX_EXPERTS, description="CondConv: multiplies every block's expert count `cc` (8e: 2)"
    )

    @model_validator(mode="after")
    def _stage_depth_bounds(self) -> ScalingSection:
        for name in ("stage_depth", "stage_growth"):
            for value in getattr(self, name) or ():
                if not 0.0 < value <= limits.MAX_MULTIPLIER:
                    raise ValueError(f"{name} entries must be in (0, {limits.MAX_MULTIPLIER:g}], got {value:g}")
        return self


class Range(_Section):
    """A value that moves linearly from ``start`` to ``end`` over progressive-learning stages."""

    start: float
    end: float


class TrainingRecipe(_Section):
    """Progressive learning as in EfficientNetV2 (google/automl): ``progressive_stages`` equal stages, stage i of n uses
    ``start + (end - start) * i / n`` for i = 1..n (image size truncated to an integer)."""

    epochs: int = Field(350, ge=1, le=100_000, description="total training epochs")
    progressive_stages: int = Field(1, ge=1, le=64, description="progressive-learning stages; 1 = no progression")
    image_size: Range | None = Field(None, description="image size, min -> max; default: train resolution")
    randaug: Range | None = Field(None, description="RandAugment magnitude, min -> max")
    mixup: Range | None = Field(None, description="mixup alpha, min -> max")
    dropout: Range | None = Field(None, description="head dropout, min -> max; default: head.dropout")

    def schedule(self, train_resolution: int, head_dropout: float) -> list[dict[str, float]]:
        """Per-stage settings, so users can see where progressive learning actually happens."""
        image = self.image_size or Range(start=train_resolution, end=train_resolution)
        dropout = self.dropout or Range(start=head_dropout, end=head_dropout)
        plan = []
        for i in range(1, self.progressive_stages + 1):
            t = i / self.progressive_stages
            row: dict[str, float] = {
                "stage": i,
                "epochs": self.epochs / self.progressive_stages,
                "image_size": int(image.start + (image.end - image.start) * t),
                "dropout": dropout.start + (dropout.end - dropout.start) * t,
            }
            for name in ("randaug", "mixup"):
                value: Range | None = getattr(self, name)
                if value is not None:
                    row[name] = value.start + (value.end - value.start) * t
            plan.append(row)
        return plan


class StageArgs(_Section):
    """One stage line, decoded from its dialect into dialect-free arguments."""

    text: str = Field(description="the block string as written")
    kind: BlockKind
    repeats: int = Field(ge=1, le=limits.MAX_REPEATS)
    kernel: int = Field(ge=1, le=limits.MAX_KERNEL)
    stride: int = Field(ge=1, le=2)
    expansion: float = Field(ge=1.0, le=limits.MAX_EXPANSION)
    in_channels: int | None = Field(ge=1, le=limits.MAX_CHANNELS, description="None: chained from the previous stage")
    out_channels: int = Field(ge=1, le=limits.MAX_CHANNELS)
    se_ratio: float | None = Field(gt=0.0, le=1.0)
    skip: bool = Field(description="residual allowed (it exists only where stride is 1 and widths match)")
    activation: Activation | None = None
    expand_conv: bool = Field(description="mbconv: whether the 1x1 expansion conv exists (tf: e != 1; timm ir: always)")
    convention: Literal["tf", "timm"] = Field(
        description=(
            "channel arithmetic of the dialect's reference code. tf: expanded = in*e, SE = max(1, int(in*se)). "
            "timm: expanded = make_divisible(in*e), SE = max(1, round(expanded*se/e))"
        )
    )
    mixed_kernels: list[int] | None = Field(
        None,
        description="MixConv (timm k3.5.7): the depthwise conv's kernel per channel group; `kernel` is the first",
    )
    expand_groups: int = Field(1, ge=1, le=limits.MAX_CONV_GROUPS, description="timm a1.1: 1x1 expansion groups")
    project_groups: int = Field(1, ge=1, le=limits.MAX_CONV_GROUPS, description="timm p1.1: 1x1 projection groups")
    forced_in_channels: int | None = Field(
        None, ge=1, le=limits.MAX_CHANNELS, description="timm fc: expansion width computed from this many inputs"
    )
    experts: int | None = Field(None, ge=1, le=limits.MAX_EXPERTS, description="timm cc: CondConv experts")
    continues: bool = Field(
        False, description="the line continues the previous line's stage (written as a `[a, b]` group)"
    )


class SpecDocument(_Section):
    name: str = Field(min_length=1, max_length=128)
    dialect: Dialect
    input: InputSection
    stem: StemSection
    stages: list[StageArgs] = Field(min_length=1, max_length=limits.MAX_STAGES)
    head: HeadSection = HeadSection()
    defaults: DefaultsSection = DefaultsSection()
    scaling: ScalingSection = ScalingSection()
    training: TrainingRecipe = TrainingRecipe()
    spans: dict[str, SourceSpan] = Field(
        default_factory=dict, description="where each key and stage line was written (for diagnostics)"
    )

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str) -> str:
        """The name ends up in emitted code, docstrings and file names, and in specs `scale` writes."""
        bad = next((char for char in name if not char.isprintable() or char in '"\\'), None)
        if bad is not None:
            raise ValueError(f"must be printable text without quotes or backslashes (found {bad!r})")
        return name

    def span(self, key: str) -> SourceSpan | None:
        """Best location for ``key`` (e.g. ``scaling.depth``, ``stages.3``), falling back to its section."""
        return nearest_span(self.spans, key)

    def stage_lines(self) -> list[list[int]]:
        """The indices into `stages` of each stage's lines: one line per stage unless lines were grouped."""
        groups: list[list[int]] = []
        for index, line in enumerate(self.stages):
            if line.continues and groups:
                groups[-1].append(index)
            else:
                groups.append([index])
        return groups


def nearest_span(spans: dict[str, SourceSpan], key: str) -> SourceSpan | None:
    """The span of ``key``, else of its closest enclosing key (``a.b.c`` -> ``a.b`` -> ``a``), else the file's."""
    while key:
        if key in spans:
            return spans[key]
        key = key.rpartition(".")[0]
    return spans.get("")


#: Sections in canonical order, with their models. The formatter and the docs walk this.
SECTIONS: dict[str, type[_Section]] = {
    "input": InputSection,
    "stem": StemSection,
    "head": HeadSection,
    "defaults": DefaultsSection,
    "scaling": ScalingSection,
    "training": TrainingRecipe,
}
TOP_LEVEL_KEYS = ("name", "dialect", "extends")
