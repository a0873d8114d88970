"""EfficientNet-family layers in plain PyTorch, driven by an explicit per-block config table.

This module imports nothing but the standard library and torch on purpose: ``specdsl`` copies its
source text verbatim into every emitted standalone model file, so ``specdsl.build`` and the
emitted file run the very same code. Every structural decision (widths, SE, residual, padding,
drop-path rate) arrives already made in the config; nothing here re-derives it.

Parameter and buffer names are the canonical weight names (see docs/weights.md)::

    stem.conv.weight, stem.bn.{weight,bias,running_mean,running_var}
    stages.{s}.{b}.{expand,spatial,project}.{conv,bn}.*, stages.{s}.{b}.se.{reduce,expand}.{weight,bias}
    head.conv.weight, head.bn.*, classifier.{weight,bias}
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm  # BatchNorm2d and SyncBatchNorm alike
from torch.utils.checkpoint import checkpoint


class BlockConfig(NamedTuple):
    """One block, exactly as the resolved IR states it."""

    kind: str  # "mbconv" | "fused" | "conv"
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    expand_channels: int | None  # mbconv: None means no expansion conv
    se_channels: int | None  # None means no squeeze-excite
    activation: str  # "silu" | "relu" | "relu6" | "hard_swish"
    residual: bool
    drop_path: float  # stochastic-depth drop probability (training only)
    input_size: int  # feature-map side the IR predicts at the block input


class NetworkConfig(NamedTuple):
    """The whole network: stem, stages of blocks, head."""

    in_channels: int
    padding: str  # "same" (TensorFlow SAME) | "symmetric" ((k - 1) // 2)
    bn_eps: float
    bn_momentum: float  # PyTorch convention
    stem_channels: int
    stem_kernel: int
    stem_stride: int
    stem_activation: str
    resolution: int  # input side the IR predicts
    stages: tuple[tuple[BlockConfig, ...], ...]
    head_channels: int | None  # None: no head conv
    head_activation: str
    dropout: float
    classes: int


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hard_swish": nn.Hardswish,
}


def make_activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding of one spatial dim as (before, after); the extra pixel goes after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class PaddedConv2d(nn.Conv2d):
    """``nn.Conv2d`` with the IR's padding rule.

    'symmetric', and 'same' where it is symmetric for every input size (stride 1, odd kernel), use
    the convolution's own padding. Otherwise 'same' pads with a fixed ``F.pad`` computed once for
    the input size the IR predicts, so exported graphs hold constants; any other input size falls
    back to computing the padding from the input shape.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        *,
        groups: int = 1,
        bias: bool = False,
        padding: str = "same",
        input_size: int = 0,
    ) -> None:
        if padding not in ("same", "symmetric"):
            raise ValueError(f"unknown padding {padding!r}; expected 'same' or 'symmetric'")
        symmetric = padding == "symmetric" or (stride == 1 and kernel % 2 == 1)
        super().__init__(
            in_channels,
            out_channels,
            kernel,
            stride,
            padding=(kernel - 1) // 2 if symmetric else 0,
            groups=groups,
            bias=bias,
        )
        self.tf_same = not symmetric
        self.input_size = input_size
        self.static_pad = self._pad_for(input_size, input_size) if self.tf_same else (0, 0, 0, 0)

    def _pad_for(self, height: int, width: int) -> tuple[int, int, int, int]:
        top, bottom = same_padding(height, self.kernel_size[0], self.stride[0])
        left, right = same_padding(width, self.kernel_size[1], self.stride[1])
        return left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_same:
            height, width = x.shape[-2:]
            if height == self.input_size and width == self.input_size:
                pad = self.static_pad
            else:
                pad = self._pad_for(height, width)
            if any(pad):
                x = F.pad(x, pad)
        return super().forward(x)


class ConvBNAct(nn.Module):
    """conv -> BN -> activation (or none); ``fuse`` folds the BN into the conv for inference."""

    def __init__(self, conv: nn.Conv2d, eps: float, momentum: float, activation: str | None) -> None:
        super().__init__()
        self.conv = conv
        self.bn: nn.Module = nn.BatchNorm2d(conv.out_channels, eps=eps, momentum=momentum)
        self.act = make_activation(activation) if activation is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        bn = self.bn
        if not isinstance(bn, _BatchNorm):
            return  # already fused
        weight = self.conv.weight
        # Fold in float64 so the fused model stays within rounding of the unfused one.
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() - bn.running_mean.double() * scale
        if self.conv.bias is not None:
            shift = shift + self.conv.bias.double() * scale
        self.conv.weight = nn.Parameter((weight.double() * scale.reshape(-1, 1, 1, 1)).to(weight.dtype))
        self.conv.bias = nn.Parameter(shift.to(weight.dtype))
        self.bn = nn.Identity()


class SqueezeExcite(nn.Module):
    """Global mean -> 1x1 conv (bias) -> act -> 1x1 conv (bias) -> sigmoid -> rescale."""

    def __init__(self, channels: int, se_channels: int, activation: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, se_channels, 1, bias=True)
        self.act = make_activation(activation)
        self.expand = nn.Conv2d(se_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(scale))))


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Per-sample stochastic depth: zero whole samples with probability ``rate``, rescale the rest."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask


class Block(nn.Module):
    """MBConv, Fused-MBConv or plain conv block; which convolutions exist is read from the config."""

    def __init__(self, cfg: BlockConfig, padding: str, eps: float, momentum: float) -> None:
        super().__init__()
        if cfg.kind not in ("mbconv", "fused", "conv"):
            raise ValueError(f"unknown block kind {cfg.kind!r}")
        if cfg.kind == "conv" and (cfg.se_channels is not None or cfg.expand_channels is not None):
            raise ValueError("a 'conv' block has neither expansion nor squeeze-excite")
        mid = cfg.expand_channels if cfg.expand_channels is not None else cfg.in_channels
        spatial_out = cfg.out_channels if cfg.kind == "conv" else mid

        def conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> PaddedConv2d:
            return PaddedConv2d(cin, cout, kernel, stride, groups=groups, padding=padding, input_size=cfg.input_size)

        self.expand: ConvBNAct | None = None
        if cfg.kind == "mbconv" and cfg.expand_channels is not None:
            self.expand = ConvBNAct(conv(cfg.in_channels, mid, 1), eps, momentum, cfg.activation)
        spatial_in, groups = (mid, mid) if cfg.kind == "mbconv" else (cfg.in_channels, 1)
        self.spatial = ConvBNAct(
            conv(spatial_in, spatial_out, cfg.kernel, cfg.stride, groups), eps, momentum, cfg.activation
        )
        self.se = SqueezeExcite(mid, cfg.se_channels, cfg.activation) if cfg.se_channels is not None else None
        self.project: ConvBNAct | None = None
        if cfg.kind != "conv":
            # 1x1 stride 1: its padding never depends on the input size.
            self.project = ConvBNAct(conv(mid, cfg.out_channels, 1), eps, momentum, None)
        self.residual = cfg.residual
        self.drop_path = cfg.drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.spatial(out)
        if self.se is not None:
            out = self.se(out)
        if self.project is not None:
            out = self.project(out)
        if self.residual:
            out = x + drop_path(out, self.drop_path, self.training)
        return out


@contextlib.contextmanager
def _frozen_running_stats(module: nn.Module) -> Iterator[None]:
    """While a checkpointed block is recomputed in backward, keep its BNs from updating running stats twice.

    Momentum 0 leaves the running stats exactly as they are while the BN still saves the same
    tensors for backward (checkpoint checks that); the batch counter is put back afterwards.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
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


class EfficientNet(nn.Module):
    """stem -> stages of blocks -> [head conv] -> global average pool -> dropout -> classifier.

    ``memory_efficient=True`` checkpoints every block while training with autograd on: block
    activations are recomputed in backward instead of stored. Eval mode, and therefore export,
    always takes the plain path.
    """

    def __init__(self, config: NetworkConfig, *, memory_efficient: bool = False) -> None:
        super().__init__()
        eps, momentum, padding = config.bn_eps, config.bn_momentum, config.padding
        self.config = config
        self.memory_efficient = memory_efficient
        stem_conv = PaddedConv2d(
            config.in_channels,
            config.stem_channels,
            config.stem_kernel,
            config.stem_stride,
            padding=padding,
            input_size=config.resolution,
        )
        self.stem = ConvBNAct(stem_conv, eps, momentum, config.stem_activation)
        self.stages = nn.ModuleList(
            nn.ModuleList(Block(cfg, padding, eps, momentum) for cfg in stage) for stage in config.stages
        )
        last = config.stages[-1][-1].out_channels
        self.head: ConvBNAct | None = None
        if config.head_channels is not None:
            head_conv = nn.Conv2d(last, config.head_channels, 1, bias=False)
            self.head = ConvBNAct(head_conv, eps, momentum, config.head_activation)
        features = config.head_channels if config.head_channels is not None else last
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(features, config.classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before pooling."""
        x = self.stem(x)
        recompute = self.memory_efficient and self.training and torch.is_grad_enabled()
        for stage in self.stages:
            for block in stage:
                if recompute:
                    x = checkpoint(
                        block,
                        x,
                        use_reentrant=False,
                        context_fn=lambda block=block: (contextlib.nullcontext(), _frozen_running_stats(block)),
                    )
                else:
                    x = block(x)
        if self.head is not None:
            x = self.head(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(self.dropout(x))

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Reference init, reproducible from ``seed`` alone (a private generator; global RNG untouched).

        conv: N(0, sqrt(2 / fan_out)), fan_out = k*k*out // groups; linear: U(+-1/sqrt(out)); biases 0;
        BN: weight 1, bias 0, fresh running stats.
        """
        generator = torch.Generator().manual_seed(seed)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                fan_out = kh * kw * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out), generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, _BatchNorm):
                module.reset_parameters()

    def fuse(self) -> EfficientNet:
        """Fold every BN into its conv, store weights channels_last and switch to eval: inference only.

        channels_last lets the CPU convolutions skip layout conversions (benchmarks/results_torch.md:
        0.6-0.8x the latency of NCHW weights); inputs may stay NCHW, outputs equal within rounding.
        """
        for module in self.modules():
            if isinstance(module, ConvBNAct):
                module.fuse()
        return self.to(memory_format=torch.channels_last).eval()


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
    """Minimal safetensors reader (little-endian hosts), so a standalone model needs only torch. No pickle."""
    data = Path(path).read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info["shape"])
    return tensors


def load_canonical(model: EfficientNet, state: Mapping[str, torch.Tensor]) -> None:
    """Load canonical weights: every parameter and running stat must be present, nothing extra."""
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()  # the batch counters are not canonical: they restart at zero
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
