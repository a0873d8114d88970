"""Write a standalone PyTorch model: ``<name>.py`` (torch only), ``<name>.safetensors``, optionally ``<name>.pt2``.

The ``.py`` file is the source text of `layers` followed by a generated config table and a
constructor, so it runs exactly the code `build` runs.
"""

from __future__ import annotations

import ast
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from specdsl.backends import BACKENDS
from specdsl.ir import ModelIR
from specdsl.passes.features import Features
from specdsl.passes.lower import lower, lower_for_build

from ..naming import file_stem
from . import layers
from .model import build, build_network, fused

EXPORTS = tuple(BACKENDS["torch"].exports)
_LINE = 120  # the line length the emitted file keeps to (ruff's, as configured for specdsl)


def class_name(name: str) -> str:
    """A CamelCase class name for ``name`` that cannot shadow a name the layers define."""
    out = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9a-zA-Z]+", name) if part) or "Model"
    if out[0].isdigit():
        out = f"Model{out}"
    return f"{out}Model" if hasattr(layers, out) else out


def docstring_text(text: str) -> str:
    """``text`` safe inside a triple-quoted docstring: quotes, backslashes and unprintable characters escaped."""

    def escaped(char: str) -> str:
        if char == '"':
            return '\\"'
        return char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode()

    return "".join(escaped(char) for char in text)


def emit(
    ir: ModelIR,
    out_dir: str | Path,
    *,
    weights: str | Path | dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    deploy: bool = False,
    export: str | None = None,
    features: Features = None,
    out_indices: Sequence[int] | None = None,
) -> list[Path]:
    """Write the standalone module and canonical weights into ``out_dir`` (and ``<name>.pt2`` with export='pt2':
    a ``torch.export`` program taking any batch size at the spec's resolution). With ``features`` the module is
    a backbone (its forward returns the taps); the weights file stays the full network's."""
    from specdsl import weights as canonical

    if export is not None and export not in EXPORTS:
        raise ValueError(f"the torch backend exports {', '.join(EXPORTS)}, not {export!r}")
    out_dir = Path(out_dir)
    stem = file_stem(ir.name)
    model = build_network(lower(ir), ir, weights=weights, seed=seed)  # the whole network's weights, backbone or not
    source = standalone_source(ir, stem, seed=seed, deploy=deploy, features=features, out_indices=out_indices)
    py = out_dir / f"{stem}.py"
    py.write_text(source, encoding="utf-8")
    paths = [py, canonical.save(model, out_dir / f"{stem}.safetensors", ir=ir)]
    if export == "pt2":
        net = lower_for_build(ir, features, out_indices)
        if net.taps:  # a backbone (asked for, or the spec's outputs)
            model = build(ir, weights=weights, seed=seed, features=features, out_indices=out_indices)
        model.eval()
        if deploy:
            # fuse() stores channels_last weights for eager CPU speed; the saved program holds plain
            # contiguous tensors, which every runtime that loads .pt2 files accepts.
            fused(model, net).to(memory_format=torch.contiguous_format)
        paths.append(_save_program(export_program(model, ir), out_dir / f"{stem}.pt2"))
    return paths


def export_program(model: torch.nn.Module, ir: ModelIR) -> torch.export.ExportedProgram:
    """``torch.export`` with a dynamic batch dimension (1 to MAX_BATCH) at the spec's fixed resolution.

    The example has batch 2: an example of batch 1 would let the exporter specialise the batch to 1.
    """
    from specdsl import limits

    batch = torch.export.Dim("batch", min=1, max=limits.MAX_BATCH)
    example = torch.zeros(2, ir.in_channels, ir.resolution, ir.resolution)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def _save_program(program: torch.export.ExportedProgram, path: Path) -> Path:
    """Serialise in memory, then write with Python's file I/O: torch's own file writer aborts the whole
    process when the disk fills up (torch 2.13), where a Python write raises an ordinary OSError."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    path.write_bytes(buffer.getbuffer())
    return path


def _layers_body() -> str:
    """The layers module's source without its docstring."""
    text = Path(layers.__file__).read_text(encoding="utf-8")
    docstring = ast.parse(text).body[0]
    return "\n".join(text.splitlines()[docstring.end_lineno :]).lstrip("\n")


def _inline(value: object) -> str:
    """Python source for a JSON value on one line, as ruff format writes it (double-quoted strings)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_inline(key)}: {_inline(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(item) for item in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _literal_lines(value: object, indent: int, prefix: str = "", suffix: str = "") -> list[str]:
    """``value`` as source lines: one line where it fits, else one item per line with a trailing comma
    (the layout ruff format produces and keeps)."""
    pad = " " * indent
    line = f"{pad}{prefix}{_inline(value)}{suffix}"
    if len(line) <= _LINE or not isinstance(value, dict | list) or not value:
        return [line]
    if isinstance(value, dict):
        opening, closing = "{", "}"
        items = [(f"{_inline(key)}: ", item) for key, item in value.items()]
    else:
        opening, closing = "[", "]"
        items = [("", item) for item in value]
    lines = [f"{pad}{prefix}{opening}"]
    for key, item in items:
        lines += _literal_lines(item, indent + 4, key, ",")
    return [*lines, f"{pad}{closing}{suffix}"]


def standalone_source(
    ir: ModelIR,
    stem: str,
    *,
    seed: int = 0,
    deploy: bool = False,
    features: Features = None,
    out_indices: Sequence[int] | None = None,
) -> str:
    """The text of ``<stem>.py``: header, layers, config table, model class and ``load_model``."""
    from specdsl import __version__
    from specdsl.weights import preprocessing

    cls = class_name(ir.name)
    net = lower_for_build(ir, features, out_indices)
    network = net.to_json()
    channels, height, width = network["input_shape"]
    result = "maps" if network.get("taps") else "logits"  # a backbone returns its feature maps (model.feature_info)
    name = docstring_text(ir.name)
    header = f'''"""{name}: a standalone PyTorch model generated by specdsl {__version__}. Needs only torch.

Weights are the canonical safetensors file beside this one, ``{stem}.safetensors``::

    from {stem} import load_model

    model = load_model()  # eval mode; deploy=True folds BN into the convs
    {result} = model(images)  # images: (N, {channels}, {height}, {width}) float32

State-dict keys are specdsl's canonical weight names. The network is the NETWORK table at the end:
specdsl's lowering of the spec, one op per entry in forward order. The code above it is copied from
specdsl's PyTorch backend. Regenerate rather than edit.
"""
'''
    footer = f'''


SEED = {seed}
DEPLOY = {deploy}
WEIGHTS = Path(__file__).with_name("{stem}.safetensors")
# What the weights expect (the same keys and values as specdsl.build's model.preprocessing and the ONNX metadata).
{chr(10).join(_literal_lines(preprocessing(net), 0, "PREPROCESSING = "))}

{chr(10).join(_literal_lines(network, 0, "NETWORK = "))}


class {cls}(EfficientNet):
    """{name}, {len(ir.blocks)} blocks, {height}x{width} input."""

    def __init__(self, *, memory_efficient: bool = False) -> None:
        super().__init__(NETWORK, memory_efficient=memory_efficient)


def load_model(weights: str | Path | None = WEIGHTS, *, deploy: bool = DEPLOY) -> {cls}:
    """The model in eval mode with canonical weights (``weights=None``: the reference init from SEED)."""
    with torch.device("meta"):  # shapes only: no default init drawing from the global RNG
        model = {cls}()
    model = materialize(model, None if weights is None else read_safetensors(weights), SEED).eval()
    model = model.fuse() if deploy else model
    model.preprocessing = dict(PREPROCESSING)
    return model
'''
    return header + "\n" + _layers_body() + footer
