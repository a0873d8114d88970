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
from specdsl.passes.analysis import DTYPE_BYTES, footprint_of
from specdsl.passes.lower import lower
from specdsl.passes.regularisation import block_drop_path
from specdsl.passes.scaling import make_divisible, round_filters, spread_repeats
from specdsl.spec import IMAGENET_MEAN, IMAGENET_STD, SpecDocument, StageArgs
from specdsl.vocabulary import BlockKind


def _out_size(size: int, stride: int) -> int:
    # TF SAME and symmetric (k-1)//2 padding agree on output size for odd kernels.
    return math.ceil(size / stride)


def _check_channels(doc: SpecDocument, key: str, value: int, what: str) -> int:
    if value > limits.MAX_CHANNELS:
        raise SpecError(f"{what} is {value} channels after scaling; the limit is {limits.MAX_CHANNELS}", doc.span(key))
    return value


def _stage_multipliers(doc: SpecDocument, stages: int) -> list[float]:
    scaling = doc.scaling
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
    for key in ("stage_depth", "stage_growth"):
        values = getattr(scaling, key)
        if values is not None and len(values) != stages:
            raise SpecError(f"scaling.{key} has {len(values)} entries for {stages} stages", doc.span(f"scaling.{key}"))
    multipliers = scaling.stage_depth or [1.0] * stages
    if scaling.fix_first_last:
        for index in {0, stages - 1}:
            if multipliers[index] != 1.0:
                raise SpecError(
                    f"scaling.stage_depth scales stage {index}, which fix_first_last keeps at its written depth",
                    doc.span("scaling.stage_depth"),
                )
    return multipliers


def line_repeats(doc: SpecDocument) -> list[int]:
    """Blocks per stage line after depth scaling (`spread_repeats` per stage): all that ``scaling.depth`` and
    ``scaling.stage_depth`` decide."""
    scaling = doc.scaling
    groups = doc.stage_lines()
    multipliers = _stage_multipliers(doc, len(groups))
    repeats: list[int] = []
    for index, (lines, multiplier) in enumerate(zip(groups, multipliers, strict=True)):
        depth = scaling.depth if multiplier == 1.0 else scaling.depth * multiplier
        if scaling.fix_first_last and index in (0, len(groups) - 1):
            depth = 1.0
        counts = spread_repeats([doc.stages[line].repeats for line in lines], depth, scaling.depth_trunc)
        if sum(counts) > limits.MAX_REPEATS:
            raise SpecError(
                f"stage {index} has {sum(counts)} blocks after depth scaling; the limit is {limits.MAX_REPEATS}",
                doc.span(f"stages.{lines[0]}"),
            )
        repeats += counts
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
    """``in_channels``: the block's input width, or the scaled forced width (timm ``fc``) when the line has one."""
    if stage.kind is BlockKind.CONV or (stage.kind is BlockKind.MBCONV and not stage.expand_conv):
        return None
    if stage.convention == "timm":
        return make_divisible(in_channels * stage.expansion)
    return int(in_channels * stage.expansion)


def _se_channels(doc: SpecDocument, stage: StageArgs, in_channels: int, mid_channels: int) -> int | None:
    """From the block input by the dialect's rule, or (``se_width = expanded``) from the expanded width, rounded."""
    if stage.se_ratio is None:
        return None
    if doc.defaults.se_width == "expanded":
        return make_divisible(mid_channels * stage.se_ratio, doc.defaults.se_divisor)
    if stage.convention == "timm":
        return max(1, round(mid_channels * stage.se_ratio / stage.expansion))
    return max(1, int(in_channels * stage.se_ratio))


def _check_groups(doc: SpecDocument, key: str, block: Block) -> None:
    """Every channel group of a split conv gets at least one channel."""
    split = [
        (len(block.spatial_kernels), block.mid_channels, "depthwise"),
        (block.expand_groups, min(block.in_channels, block.mid_channels), "expansion"),
        (block.project_groups, min(block.mid_channels, block.out_channels), "projection"),
    ]
    for groups, channels, what in split:
        if groups > channels:
            raise SpecError(
                f"the {what} conv of stage {block.stage} is split into {groups} groups but has {channels} channels",
                doc.span(key),
            )


def _check_strides(doc: SpecDocument) -> None:
    for index, line in enumerate(doc.stages):
        if line.continues and line.stride != 1:
            raise SpecError(
                "only a stage's first block strides: start a new stage for this line or give it stride 1",
                doc.span(f"stages.{index}"),
            )


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
    """Lower a validated document to the fully resolved network, within the build-memory limit."""
    ir = resolve_unchecked(doc)
    _check_size(ir, doc)
    return ir


def resolve_unchecked(doc: SpecDocument) -> ModelIR:
    """`resolve` without the build-memory check (which lowers the whole network): for searches that resolve many
    candidate documents and `resolve` only the one they keep."""
    _check_continuity(doc)
    _check_strides(doc)
    repeats = line_repeats(doc)
    _check_resolution(doc, doc.stem.stride * math.prod(stage.stride for stage in doc.stages))
    stem = _stem(doc)
    stages = _stages(doc, stem, repeats)
    last = stages[-1].blocks[-1]
    return ModelIR(
        name=doc.name,
        in_channels=doc.input.channels,
        resolution=doc.input.resolution,
        normalization=_normalization(doc),
        train_resolution=doc.input.effective_train_resolution,
        padding=doc.defaults.padding,
        batch_norm=_batch_norm(doc),
        stem=stem,
        stages=stages,
        head=_head(doc, last.out_channels, last.output_size),
        training=doc.training,
        spec=doc,
    )


def _width(doc: SpecDocument, channels: int) -> int:
    """A written channel count after width scaling, rounded by the spec's rule."""
    scaling = doc.scaling
    return round_filters(channels, scaling.width, scaling.divisor, scaling.round_up_90)


def _stem(doc: SpecDocument) -> Stem:
    """The stem conv: scaled with the network unless ``scale_stem`` is off."""
    if doc.stem.kernel % 2 == 0:
        raise SpecError(f"stem kernel must be odd, got {doc.stem.kernel}", doc.span("stem.kernel"))
    out_channels = _width(doc, doc.stem.channels) if doc.scaling.scale_stem else doc.stem.channels
    return Stem(
        in_channels=doc.input.channels,
        out_channels=_check_channels(doc, "stem.channels", out_channels, "the stem"),
        kernel=doc.stem.kernel,
        stride=doc.stem.stride,
        activation=doc.stem.activation or doc.defaults.activation,
        input_size=doc.input.resolution,
        output_size=_out_size(doc.input.resolution, doc.stem.stride),
    )


def _stages(doc: SpecDocument, stem: Stem, repeats: list[int]) -> list[Stage]:
    """Every block in order: each takes the width and size the one before gives, and its share of drop path."""
    total_blocks = sum(repeats)
    stages: list[Stage] = []
    channels, size, global_index = stem.out_channels, stem.output_size, 0
    for stage_index, lines in enumerate(doc.stage_lines()):
        blocks: list[Block] = []
        for line in lines:
            args, key = doc.stages[line], f"stages.{line}"
            out_channels = _check_channels(doc, key, _width(doc, args.out_channels), f"stage {stage_index} output")
            experts = None if args.experts is None else args.experts * doc.scaling.experts_multiplier
            if experts is not None and experts > limits.MAX_EXPERTS:
                raise SpecError(f"{experts} CondConv experts; the limit is {limits.MAX_EXPERTS}", doc.span(key))
            for _ in range(repeats[line]):
                block = _block(
                    doc,
                    line,
                    stage=stage_index,
                    index=len(blocks),
                    global_index=global_index,
                    stride=args.stride if not blocks else 1,
                    channels=(channels, out_channels),
                    input_size=size,
                    experts=experts,
                    drop_path=block_drop_path(doc.defaults.drop_path, global_index, total_blocks),
                )
                _check_groups(doc, key, block)
                blocks.append(block)
                channels, size, global_index = out_channels, block.output_size, global_index + 1
        stages.append(Stage(index=stage_index, blocks=blocks))
    return stages


def _block(
    doc: SpecDocument,
    line: int,
    *,
    stage: int,
    index: int,
    global_index: int,
    stride: int,
    channels: tuple[int, int],
    input_size: int,
    experts: int | None,
    drop_path: float,
) -> Block:
    """One block of stage line ``line`` at its place in the network (``channels``: its input and output widths):
    expansion and SE widths by the line's dialect, residual where the shapes allow it."""
    args, defaults = doc.stages[line], doc.defaults
    in_channels, out_channels = channels
    forced = args.forced_in_channels
    expand = _expand_channels(args, in_channels if forced is None else _width(doc, forced))
    if expand is not None:
        _check_channels(doc, f"stages.{line}", expand, f"stage {stage} expansion")
    return Block(
        stage=stage,
        index=index,
        global_index=global_index,
        kind=args.kind,
        kernel=args.kernel,
        stride=stride,
        in_channels=in_channels,
        out_channels=out_channels,
        expand_channels=expand,
        se_channels=_se_channels(doc, args, in_channels, expand if expand is not None else in_channels),
        activation=args.activation or defaults.activation,
        residual=args.skip and stride == 1 and in_channels == out_channels,
        drop_path=drop_path,
        input_size=input_size,
        output_size=_out_size(input_size, stride),
        se_gate=defaults.se_gate,
        se_activation=defaults.se_activation,
        mixed_kernels=None if args.mixed_kernels is None else tuple(args.mixed_kernels),
        expand_groups=args.expand_groups,
        project_groups=args.project_groups,
        experts=experts,
        stride_at="project" if args.kind is BlockKind.FUSED and defaults.fused_stride == "project" else "spatial",
        line=line,
    )


def _head(doc: SpecDocument, in_channels: int, input_size: int) -> Head:
    """The head after the last block: its conv scaled with the network unless ``scale_head`` is off."""
    conv_channels = doc.head.channels
    if conv_channels is not None and doc.scaling.scale_head:
        conv_channels = _width(doc, conv_channels)
    if conv_channels is not None:
        _check_channels(doc, "head.channels", conv_channels, "the head")
    return Head(
        in_channels=in_channels,
        conv_channels=conv_channels,
        activation=doc.head.activation or doc.defaults.activation,
        form=doc.head.form,
        bias=doc.head.bias,
        pool=doc.head.pool,
        dropout=doc.head.dropout,
        classes=doc.head.classes,
        input_size=input_size,
    )


def _batch_norm(doc: SpecDocument) -> BatchNorm:
    """Batch norm in the PyTorch momentum convention, whichever convention the spec writes."""
    defaults = doc.defaults
    # 1 - 0.99 is 0.010000000000000009 in binary; 12 digits keep the intended 0.01 (well below float32).
    momentum = round(1.0 - defaults.bn_momentum, 12) if defaults.bn_convention == "tf" else defaults.bn_momentum
    return BatchNorm(eps=defaults.bn_eps, momentum=momentum)


def _check_size(ir: ModelIR, doc: SpecDocument) -> None:
    """The memory a build allocates (weights and one inference's activations at float32, the dtype every backend
    initialises in), checked on the lowering's shapes before any tensor exists: every build and trainer resolves.
    Reported at the stage line holding the most weights, or at the resolution when activations dominate. Counted on
    the lowering and footprint that analysis and the backends then reuse (both are kept on the IR)."""
    figures = footprint_of(ir)
    estimate = figures.build_bytes()
    if estimate <= limits.MAX_BUILD_BYTES:
        return
    activations = figures.peak_elements * DTYPE_BYTES["float32"]
    if activations > estimate - activations:
        key, hint = "input.resolution", "lower the resolution: one inference's activations dominate"
    else:
        stage_of = {block.global_index: block.stage for block in ir.blocks}
        weights: dict[int, int] = {}
        for op, params in zip(lower(ir).ops, figures.params, strict=True):
            if op.block is not None:
                weights[stage_of[op.block]] = weights.get(stage_of[op.block], 0) + params
        heaviest = max(weights, key=weights.__getitem__, default=None)
        key = "scaling.width" if heaviest is None else f"stages.{doc.stage_lines()[heaviest][0]}"
        hint = "narrow or shorten the widest stages: weights dominate (`specdsl info` shows params per stage)"
    raise SpecError(
        f"building this network needs about {estimate:,} bytes ({estimate / 2**30:.1f} GiB: "
        f"{estimate - activations:,} of weights and {activations:,} of one inference's activations, float32); "
        f"the limit is {limits.MAX_BUILD_BYTES:,} bytes",
        doc.span(key),
        hint=hint,
    )
