"""Block strings -> `StageArgs`, one decoder per published dialect.

The three dialects share a surface (``key`` + number, joined by ``_``) but not
a meaning: automl's ``c1`` is Fused-MBConv, tpu's ``c1`` is "MBConv without
depthwise", timm's ``c24`` is 24 output channels. A spec names its dialect, and
a key that its dialect does not define is an error, never a guess.

Each decoder records what its reference code builds, in dialect-free terms
(see `specdsl.spec.StageArgs`), so everything after this module is dialect-blind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lark.exceptions import UnexpectedInput

from specdsl import limits
from specdsl.errors import SourceSpan, SpecError, excerpt, shorten
from specdsl.frontend.syntax import block_parser
from specdsl.spec import StageArgs
from specdsl.vocabulary import Activation, BlockKind, Dialect


@dataclass(frozen=True)
class Option:
    key: str
    value: str | None
    offset: int  # 0-based character offset inside the block string


class _Context:
    """A block string being decoded: finds options and raises errors pointing at them."""

    def __init__(self, text: str, span: SourceSpan, dialect: Dialect) -> None:
        self.text = text
        self.span = span
        self.dialect = dialect
        self.options = _split(text, span)
        self.used: set[str] = set()

    def error(self, message: str, option: Option | None = None, hint: str | None = None) -> SpecError:
        offset = option.offset if option else 0
        shown = shorten(f"{option.key}{option.value or ''}" if option else self.text)
        where = self.span.model_copy(update={"column": self.span.column + offset, "text": excerpt(self.text, offset)})
        detail = f"{message} (in {self.dialect.value} block string, at '{shown}')"
        return SpecError(detail, where, hint=hint)

    def take(self, key: str) -> Option | None:
        self.used.add(key)
        return next((option for option in self.options if option.key == key), None)

    def flag(self, key: str) -> bool:
        option = self.take(key)
        if option is not None and option.value is not None:
            raise self.error(f"'{key}' takes no value", option)
        return option is not None

    def integer(self, key: str, *, required: bool, default: int | None = None, upper: int) -> int | None:
        option = self.take(key)
        if option is None:
            if required:
                raise self.error(f"missing required option '{key}'")
            return default
        if option.value is None or not option.value.isdigit():
            raise self.error(f"'{key}' needs a whole number", option)
        if len(option.value) > 9 or int(option.value) > upper:
            raise self.error(f"'{shorten(key + option.value)}' exceeds the limit of {upper}", option)
        return int(option.value)

    def number(self, key: str, *, upper: float) -> float | None:
        option = self.take(key)
        if option is None:
            return None
        if option.value is None or option.value.count(".") > 1:
            raise self.error(f"'{key}' needs a number", option)
        value = float(option.value)
        if value > upper:
            raise self.error(f"'{shorten(key + option.value)}' exceeds the limit of {upper:g}", option)
        return value

    def reject_unknown(self, known: set[str]) -> None:
        """Keys foreign to the dialect are reported before anything else: they usually mean a dialect mix-up."""
        for option in self.options:
            timm_activation = self.dialect is Dialect.TIMM and option.key.startswith("n")  # checked by the decoder
            if option.key not in known and not timm_activation:
                raise self._unknown(option)

    def reject_unused(self) -> None:
        """Known keys the decoder did not take (a second timm type prefix, say) are unknown here too."""
        for option in self.options:
            if option.key not in self.used:
                raise self._unknown(option)

    def _unknown(self, option: Option) -> SpecError:
        return self.error(
            f"unknown option '{shorten(option.key)}'", option, hint=_dialect_hint(option.key, self.dialect)
        )


def _split(text: str, span: SourceSpan) -> list[Option]:
    try:
        tree = block_parser().parse(text)
    except UnexpectedInput as exc:
        column = span.column + max(exc.column - 1, 0)
        where = span.model_copy(update={"column": column, "text": excerpt(text, exc.column - 1)})
        raise SpecError("malformed block string: options are key+number joined by '_'", where) from None
    options: list[Option] = []
    for node in tree.children:
        key_token, *value = node.children
        option = Option(str(key_token), str(value[0]) if value else None, (key_token.column or 1) - 1)
        if any(seen.key == option.key for seen in options):
            where = span.model_copy(
                update={"column": span.column + option.offset, "text": excerpt(text, option.offset)}
            )
            raise SpecError(f"option '{shorten(option.key)}' given twice", where)
        options.append(option)
    return options


def _dialect_hint(key: str, dialect: Dialect) -> str | None:
    owners = {
        "i": "automl/tpu",
        "o": "automl/tpu",
        "skip": "timm",
        "f": "tpu",
        "ds": "timm",
        "ir": "timm",
        "er": "timm",
        "cn": "timm",
        "a": "timm",
        "fc": "timm",
    }
    owner = owners.get(key)
    if owner and dialect.value not in owner:
        return f"'{key}' belongs to the {owner} dialect; this spec declares dialect = {dialect.value}"
    return None


# --------------------------------------------------------------------------- common checks


def _kernel_list(ctx: _Context, key: str) -> list[int] | None:
    """A kernel option's value: one number, or a dotted list (timm's mixed kernels ``k3.5.7``, ``a1.1``)."""
    option = ctx.take(key)
    if option is None:
        return None
    if option.value is None:
        raise ctx.error(f"'{key}' needs a whole number", option)
    parts = option.value.split(".")
    if len(parts) > limits.MAX_CONV_GROUPS:
        raise ctx.error(f"'{key}' lists more than {limits.MAX_CONV_GROUPS} kernels", option)
    if any(len(part) > 3 or int(part) > limits.MAX_KERNEL for part in parts):
        raise ctx.error(f"kernel exceeds the limit of {limits.MAX_KERNEL}", option)
    kernels = [int(part) for part in parts]
    if len(kernels) > 1 and ctx.dialect is not Dialect.TIMM:
        raise ctx.error(f"mixed kernels ({key}3.5.7) are timm dialect syntax", option)
    return kernels


def _kernels(ctx: _Context) -> list[int]:
    kernels = _kernel_list(ctx, "k")
    if kernels is None:
        raise ctx.error("missing required option 'k' (kernel)")
    for kernel in kernels:
        if kernel % 2 == 0:
            raise ctx.error(f"kernel must be odd, got {kernel}", ctx.take("k"))
    return kernels


def _kernel(ctx: _Context) -> int:
    return _kernels(ctx)[0]


def _repeats(ctx: _Context) -> int:
    repeats = ctx.integer("r", required=True, upper=limits.MAX_REPEATS)
    assert repeats is not None
    if repeats < 1:
        raise ctx.error("repeats must be at least 1", ctx.take("r"))
    return repeats


def _expansion(ctx: _Context, *, whole: bool) -> float:
    option = ctx.take("e")
    if option is None:
        return 1.0
    value = ctx.number("e", upper=limits.MAX_EXPANSION)
    assert value is not None
    if whole and not value.is_integer():
        raise ctx.error("expansion must be a whole number in this dialect", option)
    if value < 1:
        raise ctx.error(f"expansion must be >= 1, got {option.value}", option)
    return value


def _se(ctx: _Context) -> float | None:
    option = ctx.take("se")
    value = ctx.number("se", upper=1.0)
    if option is not None and (value is None or value <= 0):
        raise ctx.error("SE ratio must be in (0, 1]", option)
    return value


def _channels(ctx: _Context, key: str, what: str) -> int:
    value = ctx.integer(key, required=True, upper=limits.MAX_CHANNELS)
    assert value is not None
    if value < 1:
        raise ctx.error(f"{what} channels must be at least 1", ctx.take(key))
    return value


def _check_stride(ctx: _Context, key_option: Option, stride: int) -> int:
    if stride not in (1, 2):
        raise ctx.error(f"stride must be 1 or 2, got {stride}", key_option)
    return stride


# --------------------------------------------------------------------------- tf dialects


def _tf_stride(ctx: _Context, digits: int) -> int:
    option = ctx.take("s")
    if option is None:
        raise ctx.error("missing required option 's' (stride)")
    value = option.value or ""
    if not value.isdigit() or len(value) != digits:
        if digits == 2:
            hint = "tensorflow/tpu writes strides as two digits (s11, s22); one-digit strides are dialect automl"
        else:
            hint = "google/automl writes strides as one digit (s1, s2); two-digit strides are dialect tpu"
        raise ctx.error(f"stride must be {digits} digit(s), got 's{value}'", option, hint=hint)
    if digits == 2 and value[0] != value[1]:
        raise ctx.error("non-square strides are not supported", option)
    return _check_stride(ctx, option, int(value[0]))


def _decode_tf(ctx: _Context, *, stride_digits: int, conv_types: dict[int, BlockKind]) -> StageArgs:
    repeats = _repeats(ctx)
    kernel = _kernel(ctx)
    stride = _tf_stride(ctx, stride_digits)
    expansion = _expansion(ctx, whole=True)
    in_channels = _channels(ctx, "i", "input")
    out_channels = _channels(ctx, "o", "output")
    se_ratio = _se(ctx)
    skip = not ctx.flag("noskip")
    conv_option = ctx.take("c")
    conv_type = ctx.integer("c", required=False, default=0, upper=9)
    assert conv_type is not None
    if conv_type not in conv_types:
        raise ctx.error(_TF_CONV_TYPES[ctx.dialect].get(conv_type, f"unknown conv type c{conv_type}"), conv_option)
    kind = conv_types[conv_type]
    if kind is BlockKind.FUSED and expansion == 1:
        kind = BlockKind.CONV  # Fused-MBConv with e1 is a single kxk conv in automl and Keras
        if se_ratio is not None:
            raise ctx.error(
                "SE on a single-conv Fused-MBConv (e1) is placed differently by the references; not supported",
                ctx.take("se"),
            )
    ctx.reject_unused()
    return StageArgs(
        text=ctx.text,
        kind=kind,
        repeats=repeats,
        kernel=kernel,
        stride=stride,
        expansion=expansion,
        in_channels=in_channels,
        out_channels=out_channels,
        se_ratio=se_ratio,
        skip=skip,
        expand_conv=kind is BlockKind.MBCONV and expansion != 1,
        convention="tf",
    )


_TF_CONV_TYPES: dict[Dialect, dict[int, str]] = {
    Dialect.TPU: {
        1: "tensorflow/tpu conv type c1 ('MBConv without depthwise', EfficientNet-EdgeTPU) is not supported here; "
        "write it in dialect timm as er_ blocks with defaults { fused_stride = project } (specs/es.spec), "
        "or for EfficientNetV2's Fused-MBConv use dialect automl, where c1 means Fused-MBConv",
    },
    Dialect.AUTOML: {},
}


def _decode_automl(ctx: _Context) -> StageArgs:
    return _decode_tf(ctx, stride_digits=1, conv_types={0: BlockKind.MBCONV, 1: BlockKind.FUSED})


def _decode_tpu(ctx: _Context) -> StageArgs:
    for key, meaning in (("f", "fused conv"), ("p", "super-pixel"), ("cc", "CondConv")):
        option = ctx.take(key)
        if option is not None and option.value != "0":  # an explicit 0 is tpu's default: accepted
            hint = "dialect timm writes CondConv as cc<experts> (specs/cc_b0_4e.spec)" if key == "cc" else None
            raise ctx.error(f"tensorflow/tpu option '{key}' ({meaning}) is not supported", option, hint=hint)
    return _decode_tf(ctx, stride_digits=2, conv_types={0: BlockKind.MBCONV})


# --------------------------------------------------------------------------- timm

_TIMM_TYPES = {"ds": BlockKind.MBCONV, "ir": BlockKind.MBCONV, "er": BlockKind.FUSED, "cn": BlockKind.CONV}
_TIMM_ACTIVATIONS = {
    "nre": Activation.RELU,
    "nr6": Activation.RELU6,
    "nhs": Activation.HARD_SWISH,
    "nsw": Activation.SILU,
}
_TIMM_UNSUPPORTED = {"gs": "group size (gs)"}
#: Options only some timm block types take (as gen-efficientnet's _decode_block_str reads them).
_TIMM_OPTION_TYPES = {"a": ("ir",), "p": ("ir", "ds", "er"), "fc": ("er",), "cc": ("ir",)}


def _pointwise_groups(ctx: _Context, key: str) -> int:
    """timm's ``a1.1``/``p1.1``: a 1x1 conv split into as many channel groups as ones are listed."""
    kernels = _kernel_list(ctx, key)
    if kernels is None:
        return 1
    if any(kernel != 1 for kernel in kernels):
        raise ctx.error(f"'{key}' takes 1x1 kernels only ({key}1, {key}1.1, ...)", ctx.take(key))
    return len(kernels)


def _timm_extras(ctx: _Context, block_type: str, kernels: list[int]) -> dict[str, object]:
    """The gen-efficientnet options beyond EfficientNet: mixed and grouped convs, fc, CondConv."""
    for key, types in _TIMM_OPTION_TYPES.items():
        option = ctx.take(key)
        if option is not None and block_type not in types:
            raise ctx.error(f"timm '{block_type}' blocks take no '{key}' (only {', '.join(types)})", option)
    if len(kernels) > 1 and block_type not in ("ds", "ir"):
        raise ctx.error(f"mixed kernels are for depthwise convs (ds, ir), not '{block_type}'", ctx.take("k"))
    extras: dict[str, object] = {
        "mixed_kernels": kernels if len(kernels) > 1 else None,
        "expand_groups": _pointwise_groups(ctx, "a"),
        "project_groups": _pointwise_groups(ctx, "p"),
    }
    forced = ctx.integer("fc", required=False, upper=limits.MAX_CHANNELS)
    if forced == 0:
        forced = None  # fc0: gen-efficientnet's "not forced"
    experts = ctx.integer("cc", required=False, upper=limits.MAX_EXPERTS)
    if experts and (extras["mixed_kernels"] or extras["expand_groups"] > 1 or extras["project_groups"] > 1):
        raise ctx.error("CondConv (cc) with mixed or grouped convs is not defined by the references", ctx.take("cc"))
    return {**extras, "forced_in_channels": forced, "experts": experts or None}


def _decode_timm(ctx: _Context) -> StageArgs:
    first = ctx.options[0]
    if first.key not in _TIMM_TYPES or first.value is not None:
        raise ctx.error(
            "timm block strings start with a block type: ds_, ir_, er_ or cn_",
            first,
            hint="without a type prefix this looks like the automl or tpu dialect",
        )
    ctx.used.add(first.key)
    block_type = first.key
    kind = _TIMM_TYPES[block_type]
    for key, meaning in _TIMM_UNSUPPORTED.items():
        option = ctx.take(key)
        if option is not None:
            raise ctx.error(f"timm option {meaning} is not supported", option)
    activation = None
    for option in ctx.options:
        name = option.key + (option.value or "")
        if name in _TIMM_ACTIVATIONS:
            if activation is not None:
                raise ctx.error("activation given twice", option)
            activation = _TIMM_ACTIVATIONS[name]
            ctx.used.add(option.key)
        elif option.key.startswith("n") and option.key != "noskip":
            raise ctx.error(f"unknown activation '{name}' (timm knows nre, nr6, nhs, nsw)", option)
    repeats = _repeats(ctx)
    kernels = _kernels(ctx)
    extras = _timm_extras(ctx, block_type, kernels)
    stride_option = ctx.take("s")
    stride = ctx.integer("s", required=True, upper=9)
    assert stride is not None and stride_option is not None
    _check_stride(ctx, stride_option, stride)
    expansion = _expansion(ctx, whole=False)
    out_channels = _channels(ctx, "c", "output")
    se_ratio = _se(ctx)
    noskip = ctx.flag("noskip")
    skip_flag = ctx.flag("skip")
    if noskip and skip_flag:
        raise ctx.error("'skip' and 'noskip' contradict each other", ctx.take("skip"))
    if block_type in ("ds", "cn") and expansion != 1:
        raise ctx.error(f"timm '{block_type}' blocks have no expansion; drop 'e'", ctx.take("e"))
    if block_type == "cn" and se_ratio is not None:
        raise ctx.error("timm 'cn' blocks have no SE", ctx.take("se"))
    ctx.reject_unused()
    skip = skip_flag if block_type == "cn" else not noskip
    return StageArgs(
        text=ctx.text,
        kind=kind,
        repeats=repeats,
        kernel=kernels[0],
        stride=stride,
        expansion=expansion,
        in_channels=None,
        out_channels=out_channels,
        se_ratio=se_ratio,
        skip=skip,
        activation=activation,
        expand_conv=block_type == "ir",
        convention="timm",
        **extras,
    )


_DECODERS: dict[Dialect, Callable[[_Context], StageArgs]] = {
    Dialect.AUTOML: _decode_automl,
    Dialect.TPU: _decode_tpu,
    Dialect.TIMM: _decode_timm,
}


_TF_KEYS = {"r", "k", "s", "e", "i", "o", "se", "c", "noskip"}
_KNOWN_KEYS: dict[Dialect, set[str]] = {
    Dialect.AUTOML: _TF_KEYS,
    Dialect.TPU: _TF_KEYS | {"f", "p", "cc"},
    Dialect.TIMM: {"r", "k", "s", "e", "c", "se", "skip"}
    | set(_TIMM_TYPES)
    | set(_TIMM_UNSUPPORTED)
    | set(_TIMM_OPTION_TYPES),
}


def decode_block(text: str, span: SourceSpan, dialect: Dialect) -> StageArgs:
    """Decode one stage line; errors point at the offending option's column."""
    ctx = _Context(text, span, dialect)
    if dialect is not Dialect.TIMM or ctx.options[0].key in _TIMM_TYPES:
        ctx.reject_unknown(_KNOWN_KEYS[dialect])
    return _DECODERS[dialect](ctx)
