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

    @property
    def effective_train_resolution(self) -> int:
        """The size training images are drawn at: ``train_resolution``, else the evaluation ``resolution``."""
        return self.train_resolution or self.resolution

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
    """A value that moves from ``start`` (first stage) to ``end`` (last stage) over progressive-learning stages."""

    start: float
    end: float


#: Bounds of each progressive range key: (low, high, whether high itself is allowed).
_RANGE_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "image_size": (limits.MIN_RESOLUTION, limits.MAX_RESOLUTION, True),
    "randaug": (0.0, 30.0, True),
    "mixup": (0.0, 100.0, True),
    "dropout": (0.0, 1.0, False),
    "drop_path": (0.0, 1.0, False),
}


class TrainingRecipe(_Section):
    """How the network is trained: EfficientNetV2 progressive learning plus the optimiser recipe.

    Defaults are google/automl efficientnetv2's (hparams.py) where it has one. The per-stage plan is
    computed by `specdsl.training.schedule.progressive_schedule` (docs/training.md gives the formulas).
    """

    epochs: int = Field(350, ge=1, le=100_000, description="total training epochs")
    progressive_stages: int = Field(
        1, ge=1, le=64, description="progressive-learning stages (equal shares of the epochs); 1 = no progression"
    )
    image_size: Range | None = Field(
        None, description="training image size, min -> max; stage k of K uses int(min + (max - min) * k / K)"
    )
    randaug: Range | None = Field(
        None, description="RandAugment magnitude (google/automl level, 10 = its nominal maximum), min -> max"
    )
    mixup: Range | None = Field(None, description="mixup alpha, min -> max; 0 = off")
    dropout: Range | None = Field(None, description="head dropout, min -> max (dropout_schedule = paper)")
    dropout_schedule: Literal["paper", "automl"] = Field(
        "paper",
        description=(
            "paper: head dropout follows `dropout` min -> max (V2 paper, Table 6); "
            "automl: constant head.dropout, as google/automl's code trains"
        ),
    )
    drop_path: Range | None = Field(
        None, description="stochastic-depth rate of the last block, min -> max; default: defaults.drop_path"
    )
    randaug_layers: int = Field(2, ge=1, le=16, description="RandAugment operations per image")
    crop_scale: float = Field(
        0.08, gt=0.0, le=1.0, description="random-resized crop: smallest fraction of the image area kept"
    )
    flip: bool = Field(True, description="random horizontal flips")
    batch_size: int = Field(
        4096, ge=1, le=limits.MAX_BATCH, description="global batch per optimizer step, over all processes"
    )
    grad_accumulation: int = Field(
        1, ge=1, le=1024, description="micro-batches per optimizer step (each batch_size / grad_accumulation)"
    )
    optimizer: Literal["rmsprop_tf", "sgd", "adamw"] = Field(
        "rmsprop_tf", description="rmsprop_tf: TensorFlow's RMSProp (epsilon inside the square root); sgd; adamw"
    )
    lr: float = Field(
        0.016, gt=0.0, le=100.0, description="peak learning rate per 256 images; the run uses lr * batch_size / 256"
    )
    warmup_epochs: float = Field(5.0, ge=0.0, le=100_000, description="linear warmup from 0 to the peak")
    lr_decay: Literal["exponential", "cosine"] = Field(
        "exponential", description="after warmup: staircase exponential decay, or cosine to 0 at the last step"
    )
    lr_decay_epochs: float = Field(2.4, gt=0.0, le=100_000, description="exponential: epochs between decays")
    lr_decay_factor: float = Field(0.97, gt=0.0, le=1.0, description="exponential: factor per decay")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="rmsprop_tf and sgd momentum; adamw beta1")
    rmsprop_decay: float = Field(0.9, ge=0.0, lt=1.0, description="rmsprop_tf: decay of the squared-gradient average")
    epsilon: float = Field(
        0.001, gt=0.0, le=1.0, description="rmsprop_tf: added inside the square root; adamw: added to the denominator"
    )
    weight_decay: float = Field(
        1e-5,
        ge=0.0,
        le=1.0,
        description="on conv, CondConv, linear kernels only; L2 in the gradient (rmsprop_tf, sgd), decoupled (adamw)",
    )
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="cross-entropy label smoothing")
    ema_decay: float = Field(
        0.9999, ge=0.0, lt=1.0, description="moving average of the weights used for evaluation; 0 = off"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainingRecipe:
        for name, (low, high, closed) in _RANGE_BOUNDS.items():
            value: Range | None = getattr(self, name)
            for end in () if value is None else (value.start, value.end):
                if not (low <= end <= high if closed else low <= end < high):
                    raise ValueError(f"{name} must lie in [{low:g}, {high:g}{']' if closed else ')'}, got {end:g}")
        if self.epochs < self.progressive_stages:
            raise ValueError(f"{self.epochs} epochs cannot make {self.progressive_stages} progressive stages")
        if self.dropout_schedule == "automl" and self.dropout is not None:
            raise ValueError("dropout_schedule = automl keeps head.dropout constant: remove the dropout range")
        if self.batch_size % self.grad_accumulation:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of grad_accumulation")
        return self


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


class OutputsSection(_Section):
    """A backbone spec: the built model returns these feature maps instead of logits (docs/features.md)."""

    features: str | list[str] | None = Field(
        None,
        description=(
            'strides (the last map at each reduction), expansion, or a list of op names and "stages.N" '
            "(quoted); none: a classifier"
        ),
    )
    out_indices: list[int] | None = Field(
        None, description="keep these taps only, by position (0-based, negative from the end), as timm"
    )

    @model_validator(mode="after")
    def _indices_need_features(self) -> OutputsSection:
        if self.out_indices is not None and self.features is None:
            raise ValueError("out_indices selects among feature taps: give features too")
        return self


class SpecDocument(_Section):
    name: str = Field(min_length=1, max_length=128)
    dialect: Dialect
    input: InputSection
    stem: StemSection
    stages: list[StageArgs] = Field(min_length=1, max_length=limits.MAX_STAGES)
    head: HeadSection = HeadSection()
    outputs: OutputsSection = OutputsSection()
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
    "outputs": OutputsSection,
    "defaults": DefaultsSection,
    "scaling": ScalingSection,
    "training": TrainingRecipe,
}
TOP_LEVEL_KEYS = ("name", "dialect", "extends")
