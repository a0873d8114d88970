"""SpecDocument -> ModelIR: apply width/depth multipliers, expand repeats, decide every block.

This is the one place where block semantics are decided (expansion width, SE
width, residual, drop-path rate, feature-map sizes). Limits are checked on the
scaled numbers before the block list is built.
"""

from __future__ import annotations

import math

from specdsl import limits
from specdsl.errors import SpecError
from specdsl.ir import BatchNorm, Block, Head, ModelIR, Normalization, Stage, Stem
from specdsl.passes.analysis import count_params
from specdsl.passes.scaling import make_divisible, round_filters, round_repeats
from specdsl.spec import IMAGENET_MEAN, IMAGENET_STD, SpecDocument, StageArgs
from specdsl.vocabulary import BlockKind


def _out_size(size: int, stride: int) -> int:
    # TF SAME and symmetric (k-1)//2 padding agree on output size for odd kernels.
    return math.ceil(size / stride)


def _check_channels(doc: SpecDocument, key: str, value: int, what: str) -> int:
    if value > limits.MAX_CHANNELS:
        raise SpecError(f"{what} is {value} channels after scaling; the limit is {limits.MAX_CHANNELS}", doc.span(key))
    return value


def _stage_repeats(doc: SpecDocument) -> list[int]:
    scaling = doc.scaling
    multipliers = scaling.stage_depth or [1.0] * len(doc.stages)
    if len(multipliers) != len(doc.stages):
        raise SpecError(
            f"scaling.stage_depth has {len(multipliers)} entries for {len(doc.stages)} stages",
            doc.span("scaling.stage_depth"),
        )
    if scaling.rule == "compound" and scaling.stage_growth is not None:
        raise SpecError(
            "stage_growth is EfficientNetV2's non-uniform growth, but rule = compound grows every stage alike",
            doc.span("scaling.stage_growth"),
            hint="set `rule = v2`, or remove stage_growth",
        )
    if scaling.rule == "v2" and scaling.stage_growth is None:
        raise SpecError(
            "rule = v2 needs stage_growth, one growth factor per stage",
            doc.span("scaling.rule"),
            hint="without per-stage growth use `rule = compound` (max_resolution caps either rule)",
        )
    if scaling.stage_growth is not None and len(scaling.stage_growth) != len(doc.stages):
        raise SpecError(
            f"scaling.stage_growth has {len(scaling.stage_growth)} entries for {len(doc.stages)} stages",
            doc.span("scaling.stage_growth"),
        )
    repeats = []
    for index, (stage, multiplier) in enumerate(zip(doc.stages, multipliers, strict=True)):
        depth = scaling.depth if multiplier == 1.0 else scaling.depth * multiplier
        count = round_repeats(stage.repeats, depth)
        if count > limits.MAX_REPEATS:
            raise SpecError(
                f"stage {index} has {count} blocks after depth scaling; the limit is {limits.MAX_REPEATS}",
                doc.span(f"stages.{index}"),
            )
        repeats.append(count)
    if sum(repeats) > limits.MAX_BLOCKS:
        raise SpecError(
            f"{sum(repeats)} blocks after depth scaling; the limit is {limits.MAX_BLOCKS}", doc.span("scaling.depth")
        )
    return repeats


def _check_continuity(doc: SpecDocument) -> None:
    previous, where = doc.stem.channels, "the stem"
    for index, stage in enumerate(doc.stages):
        if stage.in_channels is not None and stage.in_channels != previous:
            raise SpecError(
                f"channel mismatch: stage {index} takes i{stage.in_channels} but {where} gives {previous}",
                doc.span(f"stages.{index}"),
            )
        previous, where = stage.out_channels, f"stage {index} (o{stage.out_channels})"


def _expand_channels(stage: StageArgs, in_channels: int) -> int | None:
    if stage.kind is BlockKind.CONV or (stage.kind is BlockKind.MBCONV and not stage.expand_conv):
        return None
    if stage.convention == "timm":
        return make_divisible(in_channels * stage.expansion)
    return int(in_channels * stage.expansion)


def _se_channels(stage: StageArgs, in_channels: int, mid_channels: int) -> int | None:
    if stage.se_ratio is None:
        return None
    if stage.convention == "timm":
        return max(1, round(mid_channels * stage.se_ratio / stage.expansion))
    return max(1, int(in_channels * stage.se_ratio))


def _normalization(doc: SpecDocument) -> Normalization:
    """The spec's mean/std; unset: ImageNet's for RGB input, 0.5 per channel otherwise."""
    channels = doc.input.channels
    mean = doc.input.mean or (IMAGENET_MEAN if channels == 3 else [0.5] * channels)
    std = doc.input.std or (IMAGENET_STD if channels == 3 else [0.5] * channels)
    return Normalization(mean=tuple(mean), std=tuple(std))


def _check_resolution(doc: SpecDocument, total_stride: int) -> None:
    for key, size in (
        ("input.resolution", doc.input.resolution),
        ("input.train_resolution", doc.input.train_resolution),
    ):
        if size is not None and size < total_stride:
            raise SpecError(
                f"{key.split('.')[1]} {size} is smaller than the network's total stride {total_stride}",
                doc.span(key),
            )


def resolve(doc: SpecDocument) -> ModelIR:
    """Lower a validated document to the fully resolved network."""
    scaling = doc.scaling
    defaults = doc.defaults
    _check_continuity(doc)
    repeats = _stage_repeats(doc)
    total_stride = doc.stem.stride * math.prod(stage.stride for stage in doc.stages)
    _check_resolution(doc, total_stride)
    if doc.stem.kernel % 2 == 0:
        raise SpecError(f"stem kernel must be odd, got {doc.stem.kernel}", doc.span("stem.kernel"))

    def width(channels: int) -> int:
        return round_filters(channels, scaling.width, scaling.divisor, scaling.round_up_90)

    stem_out = width(doc.stem.channels) if scaling.scale_stem else doc.stem.channels
    stem = Stem(
        in_channels=doc.input.channels,
        out_channels=_check_channels(doc, "stem.channels", stem_out, "the stem"),
        kernel=doc.stem.kernel,
        stride=doc.stem.stride,
        activation=doc.stem.activation or defaults.activation,
        input_size=doc.input.resolution,
        output_size=_out_size(doc.input.resolution, doc.stem.stride),
    )

    total_blocks = sum(repeats)
    stages: list[Stage] = []
    channels, size, global_index = stem.out_channels, stem.output_size, 0
    for stage_index, (args, count) in enumerate(zip(doc.stages, repeats, strict=True)):
        key = f"stages.{stage_index}"
        out_channels = _check_channels(doc, key, width(args.out_channels), f"stage {stage_index} output")
        blocks = []
        for block_index in range(count):
            stride = args.stride if block_index == 0 else 1
            expand = _expand_channels(args, channels)
            if expand is not None:
                _check_channels(doc, key, expand, f"stage {stage_index} expansion")
            mid = expand if expand is not None else channels
            out_size = _out_size(size, stride)
            blocks.append(
                Block(
                    stage=stage_index,
                    index=block_index,
                    global_index=global_index,
                    kind=args.kind,
                    kernel=args.kernel,
                    stride=stride,
                    in_channels=channels,
                    out_channels=out_channels,
                    expand_channels=expand,
                    se_channels=_se_channels(args, channels, mid),
                    activation=args.activation or defaults.activation,
                    residual=args.skip and stride == 1 and channels == out_channels,
                    drop_path=defaults.drop_path * global_index / total_blocks,
                    input_size=size,
                    output_size=out_size,
                )
            )
            channels, size, global_index = out_channels, out_size, global_index + 1
        stages.append(Stage(index=stage_index, blocks=blocks))

    head_conv = doc.head.channels
    if head_conv is not None and scaling.scale_head:
        head_conv = width(head_conv)
    if head_conv is not None:
        _check_channels(doc, "head.channels", head_conv, "the head")
    head = Head(
        in_channels=channels,
        conv_channels=head_conv,
        activation=doc.head.activation or defaults.activation,
        pool=doc.head.pool,
        dropout=doc.head.dropout,
        classes=doc.head.classes,
        input_size=size,
    )
    # 1 - 0.99 is 0.010000000000000009 in binary; 12 digits keep the intended 0.01 (well below float32).
    momentum = round(1.0 - defaults.bn_momentum, 12) if defaults.bn_convention == "tf" else defaults.bn_momentum
    ir = ModelIR(
        name=doc.name,
        in_channels=doc.input.channels,
        resolution=doc.input.resolution,
        normalization=_normalization(doc),
        train_resolution=doc.input.train_resolution or doc.input.resolution,
        padding=defaults.padding,
        batch_norm=BatchNorm(eps=defaults.bn_eps, momentum=momentum),
        stem=stem,
        stages=stages,
        head=head,
        training=doc.training,
        spec=doc,
    )
    _check_params(ir, doc)
    return ir


def _check_params(ir: ModelIR, doc: SpecDocument) -> None:
    params = count_params(ir)
    if params > limits.MAX_PARAMS:
        raise SpecError(f"{params} trainable parameters; the limit is {limits.MAX_PARAMS}", doc.span("scaling.width"))
