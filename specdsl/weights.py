"""Canonical weights: one naming scheme derived from the IR, stored as safetensors (never pickle).

Every backend reads and writes the same file. Names follow the network's structure and tensors
are in PyTorch layout (conv OIHW, depthwise (C, 1, kH, kW), linear (out, in)); docs/weights.md
is the reference. ``num_batches_tracked`` is not part of the scheme.

Importing this module does not import torch; the functions that produce tensors do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from specdsl.ir import Block, ModelIR
from specdsl.vocabulary import BlockKind

if TYPE_CHECKING:
    import torch

#: Written to the safetensors metadata; readers accept files without it.
FORMAT = "specdsl-canonical/1"
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


class WeightsError(ValueError):
    """Weights that do not fit the network: names the first offending tensor or layer."""


@dataclass(frozen=True)
class Layer:
    """One weight-bearing layer of the canonical scheme."""

    name: str  # canonical prefix, e.g. "stages.1.0.expand.conv"
    kind: Literal["conv", "bn", "linear"]
    shape: tuple[int, ...]  # conv: OIHW weight; bn: (channels,); linear: (out, in)
    bias: bool = False
    depthwise: bool = False
    part: str = ""  # role inside its owner: "stem.conv", "expand.bn", "se.reduce", "classifier", ...
    block: Block | None = None
    at: tuple[int, int] | None = None  # (stage, block) position of the owning block

    def tensors(self) -> dict[str, tuple[int, ...]]:
        if self.kind == "bn":
            return {f"{self.name}.{suffix}": self.shape for suffix in BN_TENSORS}
        out = {f"{self.name}.weight": self.shape}
        if self.bias:
            out[f"{self.name}.bias"] = (self.shape[0],)
        return out


def layers(ir: ModelIR) -> list[Layer]:
    """The canonical layers of ``ir`` in forward order."""

    def conv_bn(prefix: str, part: str, cin: int, cout: int, kernel: int, *, dw: bool = False, **owner: Any):
        conv_shape = (cout, 1 if dw else cin, kernel, kernel)
        return [
            Layer(f"{prefix}.conv", "conv", conv_shape, depthwise=dw, part=f"{part}.conv", **owner),
            Layer(f"{prefix}.bn", "bn", (cout,), part=f"{part}.bn", **owner),
        ]

    out = conv_bn("stem", "stem", ir.in_channels, ir.stem.out_channels, ir.stem.kernel)
    for s, stage in enumerate(ir.stages):
        for i, block in enumerate(stage.blocks):
            prefix, mid, owner = f"stages.{s}.{i}", block.mid_channels, {"block": block, "at": (s, i)}
            if block.kind == BlockKind.MBCONV:
                if block.expand_channels is not None:
                    out += conv_bn(f"{prefix}.expand", "expand", block.in_channels, mid, 1, **owner)
                out += conv_bn(f"{prefix}.spatial", "spatial", mid, mid, block.kernel, dw=True, **owner)
            else:
                spatial_out = block.out_channels if block.kind == BlockKind.CONV else mid
                out += conv_bn(f"{prefix}.spatial", "spatial", block.in_channels, spatial_out, block.kernel, **owner)
            if block.se_channels is not None:
                se = block.se_channels
                out.append(Layer(f"{prefix}.se.reduce", "conv", (se, mid, 1, 1), True, part="se.reduce", **owner))
                out.append(Layer(f"{prefix}.se.expand", "conv", (mid, se, 1, 1), True, part="se.expand", **owner))
            if block.kind != BlockKind.CONV:
                out += conv_bn(f"{prefix}.project", "project", mid, block.out_channels, 1, **owner)
    if ir.head.conv_channels is not None:
        out += conv_bn("head", "head", ir.head.in_channels, ir.head.conv_channels, 1)
    out.append(Layer("classifier", "linear", (ir.head.classes, ir.head.features), True, part="classifier"))
    return out


def canonical_shapes(ir: ModelIR) -> dict[str, tuple[int, ...]]:
    """Every canonical tensor name of ``ir`` with its shape, in forward order."""
    return {name: shape for layer in layers(ir) for name, shape in layer.tensors().items()}


def validate(state: Mapping[str, Any], ir: ModelIR, *, source: str = "weights") -> None:
    """Raise `WeightsError` unless ``state`` holds exactly the canonical tensors of ``ir``, shapes included."""
    expected = canonical_shapes(ir)
    for name, shape in expected.items():
        if name not in state:
            raise WeightsError(f"{source} do not fit {ir.name}: missing tensor '{name}' {shape}")
        found = tuple(state[name].shape)
        if found != shape:
            raise WeightsError(f"{source} do not fit {ir.name}: '{name}' has shape {found}, the network needs {shape}")
    extra = [name for name in state if name not in expected and not name.endswith("num_batches_tracked")]
    if extra:
        raise WeightsError(
            f"{source} do not fit {ir.name}: {len(extra)} tensor(s) the network does not have, first '{extra[0]}'"
        )


def save(
    model_or_state: torch.nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    ir: ModelIR | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write canonical weights to a safetensors file; with ``ir``, check them first."""
    from safetensors.torch import save_file

    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    tensors = {
        name: tensor.detach().cpu().contiguous()
        for name, tensor in state.items()
        if not name.endswith("num_batches_tracked")
    }
    fused = next((name for name in tensors if name.endswith(".conv.bias")), None)
    if fused is not None:
        raise WeightsError(f"'{fused}' is not canonical: this looks like a fused (deploy) model; save it unfused")
    if ir is not None:
        validate(tensors, ir)
    path = Path(path)
    save_file(tensors, str(path), metadata={"format": FORMAT, **(metadata or {})})
    return path


def load(path: str | Path, ir: ModelIR) -> dict[str, torch.Tensor]:
    """Read a canonical safetensors file and check it against ``ir``."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    validate(state, ir, source=f"weights in {path}")
    return state


# ---------------------------------------------------------------------------------------------
# Importers from reference implementations.

_Convert = Callable[[Layer, str, Any], "torch.Tensor"]


def _import(
    ir: ModelIR,
    source: Mapping[str, Any],
    locate: Callable[[Layer], str],
    suffixes: Mapping[str, Mapping[str, str]],
    convert: _Convert,
    label: str,
    sep: str,
) -> dict[str, torch.Tensor]:
    """Gather each canonical tensor from ``source`` (``locate`` names the source layer), converted and checked.

    Raises on the first canonical layer the source lacks or shapes differently, and on source
    tensors that no canonical layer claims (the source is a bigger network).
    """
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for layer in layers(ir):
        where = locate(layer)
        for name, shape in layer.tensors().items():
            suffix = name.rsplit(".", 1)[1]
            key = f"{where}{sep}{suffixes[layer.kind][suffix]}"
            if key not in source:
                raise WeightsError(
                    f"{label} does not fit {ir.name}: it has no '{key}' for '{name}' (is it the same variant?)"
                )
            tensor = convert(layer, suffix, source[key])
            if tuple(tensor.shape) != shape:
                raise WeightsError(
                    f"{label} does not fit {ir.name}: '{key}' becomes shape {tuple(tensor.shape)}, "
                    f"but '{name}' needs {shape} (is it the same variant?)"
                )
            state[name] = tensor
            used.add(key)
    unused = [key for key in source if key not in used]
    if unused:
        raise WeightsError(
            f"{label} does not fit {ir.name}: {len(unused)} of its tensors have no place in the network, "
            f"first '{unused[0]}' (is it the same variant?)"
        )
    return state


_IDENTITY_SUFFIXES = {
    "conv": {"weight": "weight", "bias": "bias"},
    "bn": {s: s for s in BN_TENSORS},
    "linear": {"weight": "weight", "bias": "bias"},
}
_EP_PARTS = {
    "expand.conv": "_expand_conv",
    "expand.bn": "_bn0",
    "spatial.conv": "_depthwise_conv",
    "spatial.bn": "_bn1",
    "se.reduce": "_se_reduce",
    "se.expand": "_se_expand",
    "project.conv": "_project_conv",
    "project.bn": "_bn2",
}
_EP_TOP = {
    "stem.conv": "_conv_stem",
    "stem.bn": "_bn0",
    "head.conv": "_conv_head",
    "head.bn": "_bn1",
    "classifier": "_fc",
}


def from_efficientnet_pytorch(ref: torch.nn.Module, ir: ModelIR) -> dict[str, torch.Tensor]:
    """Canonical weights from an ``efficientnet_pytorch.EfficientNet`` (MBConv networks only)."""
    source = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}

    def locate(layer: Layer) -> str:
        if layer.block is None:
            return _EP_TOP[layer.part]
        if layer.block.kind != BlockKind.MBCONV:
            raise WeightsError(
                f"efficientnet-pytorch has MBConv blocks only; '{layer.name}' is in a {layer.block.kind} block"
            )
        return f"_blocks.{layer.block.global_index}.{_EP_PARTS[layer.part]}"

    def convert(_layer: Layer, _suffix: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach().clone()

    return _import(ir, source, locate, _IDENTITY_SUFFIXES, convert, "efficientnet-pytorch model", ".")


_KERAS_SUFFIXES = {
    "conv": {"weight": "kernel", "bias": "bias"},
    "bn": {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"},
    "linear": {"weight": "kernel", "bias": "bias"},
}
_KERAS_TOP = {
    "stem.conv": "stem_conv",
    "stem.bn": "stem_bn",
    "head.conv": "top_conv",
    "head.bn": "top_bn",
    "classifier": "predictions",
}
#: Keras layer suffix per (block kind, canonical part); "{dw}" is dwconv2 (V2) or dwconv (V1).
_KERAS_PARTS = {
    "expand.conv": "expand_conv",
    "expand.bn": "expand_bn",
    "se.reduce": "se_reduce",
    "se.expand": "se_expand",
    "project.conv": "project_conv",
    "project.bn": "project_bn",
}
_KERAS_SPATIAL = {
    BlockKind.MBCONV: {"spatial.conv": "{dw}", "spatial.bn": "bn"},
    BlockKind.FUSED: {"spatial.conv": "expand_conv", "spatial.bn": "expand_bn"},
    BlockKind.CONV: {"spatial.conv": "project_conv", "spatial.bn": "project_bn"},
}
_KERAS_PREPROCESSING = ("Rescaling", "Normalization")


def from_keras_applications(keras_model: Any, ir: ModelIR) -> dict[str, torch.Tensor]:
    """Canonical weights from a ``keras.applications`` EfficientNet / EfficientNetV2 (``include_top=True``).

    Kernels move from HWIO to OIHW, depthwise HWC1 to C1HW, dense (in, out) to (out, in); BN
    moving statistics become running_mean / running_var.
    """
    import numpy as np
    import torch

    source: dict[str, Any] = {}
    for layer in keras_model.layers:
        if type(layer).__name__ in _KERAS_PREPROCESSING:
            continue
        for variable in layer.weights:
            short = getattr(variable, "path", variable.name).rsplit("/", 1)[-1].split(":")[0]
            source[f"{layer.name}/{short}"] = variable
    dw = "dwconv2" if any(key.split("/")[0].endswith("_dwconv2") for key in source) else "dwconv"

    def locate(layer: Layer) -> str:
        if layer.block is None:
            return _KERAS_TOP[layer.part]
        stage, index = layer.at
        part = _KERAS_SPATIAL[layer.block.kind].get(layer.part) or _KERAS_PARTS[layer.part]
        return f"block{stage + 1}{chr(97 + index)}_{part.format(dw=dw)}"

    def convert(layer: Layer, suffix: str, variable: Any) -> torch.Tensor:
        array = np.asarray(variable, dtype=np.float32)
        if suffix == "weight" and layer.kind == "conv":
            array = array.transpose((2, 3, 0, 1) if layer.depthwise else (3, 2, 0, 1))
        elif suffix == "weight" and layer.kind == "linear":
            array = array.T
        return torch.from_numpy(np.ascontiguousarray(array))

    return _import(ir, source, locate, _KERAS_SUFFIXES, convert, f"keras model '{keras_model.name}'", "/")
