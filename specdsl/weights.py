"""Canonical weights: the lowered network's tensor names and shapes, stored as safetensors (never pickle).

Every backend reads and writes the same file. Names are the lowering's op names plus a suffix
(``stages.1.0.expand.conv.weight``) and tensors are in PyTorch layout (conv OIHW, depthwise
(C, 1, kH, kW), linear (out, in)); docs/weights.md is the reference.

This module works on numpy arrays and imports no framework: a Keras or ONNX user never needs
torch. Framework models are accepted where they can be read without importing their framework
(a torch module's ``state_dict()``); backends convert at their own edge.

Reading is one path for every backend (`read`, `load`): the file is parsed here (never unpickled, never
trusted: a header larger than the file or than `MAX_HEADER_BYTES`, offsets outside it, a size that does
not match the shape are refused before any tensor is read), names and shapes are checked against the
network, and the values: every float dtype (float16, bfloat16, float32, float64) is cast to float32,
anything else (integers, bool) is refused, as are NaN, infinities and negative BatchNorm variances, each
naming the tensor.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from specdsl.interop import keras_model
from specdsl.ir import ModelIR
from specdsl.passes.lower import BatchNorm, CondConv, Conv, Linear, LoweredNetwork, Shape, lower

#: Written to the safetensors metadata; readers accept files without it.
FORMAT = "specdsl-canonical/1"
#: BatchNorm batch counters: framework state that the canonical scheme leaves out.
_NOT_CANONICAL = "num_batches_tracked"


#: Largest safetensors header read (the safetensors library's own limit): a larger declared length is refused.
MAX_HEADER_BYTES = 100_000_000
#: safetensors dtype -> numpy dtype of the stored bytes (little-endian); BF16 is widened to float32 on reading.
_FILE_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}
_FLOAT_NAMES = "float16, bfloat16, float32 or float64"


class WeightsError(ValueError):
    """Weights that do not fit the network, or a file that is not canonical weights: names the first offending
    tensor (or what is wrong with the file)."""


def canonical_shapes(ir: ModelIR) -> dict[str, Shape]:
    """Every canonical tensor name of ``ir`` with its shape, in forward order."""
    return lower(ir).tensors()


def validate(state: Mapping[str, Any], ir: ModelIR, *, source: str = "weights") -> None:
    """Raise `WeightsError` unless ``state`` holds exactly the canonical tensors of ``ir``, shapes included."""
    expected = canonical_shapes(ir)
    for name, shape in expected.items():
        if name not in state:
            raise WeightsError(f"{source} do not fit {ir.name}: missing tensor '{name}' {shape}")
        found = tuple(state[name].shape)
        if found != shape:
            raise WeightsError(f"{source} do not fit {ir.name}: '{name}' has shape {found}, the network needs {shape}")
    extra = [name for name in state if name not in expected and not name.endswith(_NOT_CANONICAL)]
    if extra:
        raise WeightsError(
            f"{source} do not fit {ir.name}: {len(extra)} tensor(s) the network does not have, first '{extra[0]}'"
        )


def to_numpy(value: Any) -> np.ndarray:
    """A framework tensor or array as a contiguous numpy array (a torch tensor is detached and moved to CPU;
    bfloat16, which numpy lacks, is widened to float32)."""
    if hasattr(value, "detach"):  # torch.Tensor, read without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.ascontiguousarray(np.asarray(value))


def state_of(model_or_state: Any) -> dict[str, np.ndarray]:
    """Canonical numpy tensors from a name -> tensor mapping, a Keras model built by specdsl, or a model whose
    ``state_dict()`` is canonical."""
    if isinstance(model_or_state, Mapping):
        state = model_or_state
    elif keras_model.is_keras(model_or_state):  # recognised without importing keras
        return keras_model.state_of(model_or_state)
    elif hasattr(model_or_state, "state_dict"):
        if getattr(model_or_state, "fused", False):
            raise WeightsError(
                "this is a fused (deploy) model, whose convs hold folded batch norm: save the unfused model"
            )
        state = model_or_state.state_dict()
    else:
        raise TypeError(f"cannot read canonical weights from a {type(model_or_state).__name__}")
    return {name: to_numpy(tensor) for name, tensor in state.items() if not name.endswith(_NOT_CANONICAL)}


def save(
    model_or_state: Any,
    path: str | Path,
    *,
    ir: ModelIR | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write canonical weights to a safetensors file; with ``ir``, check them first.

    The same tensors and metadata give the same bytes: the header is written here, metadata keys sorted (the
    safetensors library keeps them in a hash map, so two saves differed), tensors in the library's order (larger
    dtypes first, then by name) and its 8-byte header alignment, so a file with one metadata key is byte for byte
    what the library writes. Written with Python's I/O: a full disk or a read-only directory is an ordinary OSError.
    """
    tensors = state_of(model_or_state)
    if ir is not None:
        validate(tensors, ir)
    path = Path(path)
    header, arrays = _layout(tensors, {"format": FORMAT, **(metadata or {})})
    with path.open("wb") as file:
        file.write(len(header).to_bytes(8, "little") + header)
        for array in arrays:
            file.write(array.data)
    return path


#: The safetensors library's tensor order in a file: dtypes from the last of these to the first, then by name.
_DTYPE_ORDER = ("BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64")
_CODES = {np.dtype(stored): code for code, stored in _FILE_DTYPES.items() if code != "BF16"}


def _layout(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> tuple[bytes, list[np.ndarray]]:
    """A safetensors header (padded with spaces to 8 bytes, as the library does) and the arrays in file order."""
    if not all(isinstance(item, str) for pair in metadata.items() for item in pair):
        raise TypeError("safetensors metadata maps str to str")
    arrays = {}
    for name, value in tensors.items():
        array = np.asarray(value)
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        if array.dtype not in _CODES:
            raise TypeError(f"tensor '{name}': safetensors cannot store {array.dtype}")
        arrays[name] = array
    order = sorted(arrays, key=lambda name: (-_DTYPE_ORDER.index(_CODES[arrays[name].dtype]), name))
    entries: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for name in order:
        array = arrays[name]
        entries[name] = {
            "dtype": _CODES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    header = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()
    return header + b" " * (-len(header) % 8), [arrays[name] for name in order]


class _Declared:
    """A tensor as a file's header declares it: enough for `validate`, before any data is read."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def _header(data: Any, size: int, source: str) -> tuple[dict[str, dict[str, Any]], int]:
    """The tensor entries of a safetensors header and where the data starts; every field checked against the file."""
    if size < 8:
        raise WeightsError(f"{source}: not a safetensors file: {size} bytes (empty or truncated)")
    length = int.from_bytes(data.read(8), "little")
    if length > min(size - 8, MAX_HEADER_BYTES):
        raise WeightsError(
            f"{source}: not a safetensors file: it declares a {length:,}-byte header "
            f"(the file holds {size:,} bytes; the limit is {MAX_HEADER_BYTES:,})"
        )
    try:
        header = json.loads(data.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WeightsError(f"{source}: not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{source}: not a safetensors file: its header is not a JSON object")
    header.pop("__metadata__", None)
    body = size - 8 - length
    for name, entry in header.items():
        where = f"{source}: tensor '{name}'"
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise WeightsError(f"{where}: the header entry lacks dtype, shape or data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _FILE_DTYPES:
            raise WeightsError(f"{where} has dtype {str(dtype)[:20]!r}; canonical weights are {_FLOAT_NAMES}")
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise WeightsError(f"{where}: its shape is not a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)):
            raise WeightsError(f"{where}: its data_offsets are not two byte offsets")
        start, end = offsets
        needed = math.prod(shape) * np.dtype(_FILE_DTYPES[dtype]).itemsize
        if not 0 <= start <= end <= body or end - start != needed:
            raise WeightsError(
                f"{where}: bytes {start}..{end} of a {body:,}-byte data section; its shape needs {needed:,} "
                "(truncated or damaged)"
            )
    return header, 8 + length


def _read_file(path: Path, ir: ModelIR | None, source: str) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as numpy arrays (BF16 widened to float32), names and shapes checked
    against ``ir`` (unless None: a foreign file being imported) before the data is read. Only a regular file is
    opened for reading (a FIFO would block)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise WeightsError(f"{source}: cannot read: {error.strerror or error}") from None
    with os.fdopen(fd, "rb") as data:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise WeightsError(f"{source}: not a regular file")
        try:
            header, start = _header(data, info.st_size, source)
            if ir is not None:
                validate({name: _Declared(tuple(entry["shape"])) for name, entry in header.items()}, ir, source=source)
            state = {}
            for name, entry in header.items():
                if name.endswith(_NOT_CANONICAL):  # a framework's BN batch counter (int64): not read
                    continue
                first, last = entry["data_offsets"]
                data.seek(start + first)
                raw = data.read(last - first)
                if len(raw) != last - first:
                    raise WeightsError(f"{source}: tensor '{name}' is cut short (the file shrank while read)")
                array = np.frombuffer(bytearray(raw), dtype=_FILE_DTYPES[entry["dtype"]]).reshape(entry["shape"])
                if entry["dtype"] == "BF16":
                    array = (array.astype(np.uint32) << 16).view(np.float32)
                state[name] = array
        except OSError as error:
            raise WeightsError(f"{source}: cannot read: {error.strerror or error}") from None
    return state


def _checked_values(state: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """``state`` as float32 arrays, refusing non-float tensors, non-finite values and negative BN variances."""
    out = {}
    for name, value in state.items():
        array = np.asarray(value)
        if array.dtype.kind != "f":
            raise WeightsError(f"{source}: tensor '{name}' is {array.dtype}; canonical weights are {_FLOAT_NAMES}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        finite = np.isfinite(array)
        if not finite.all():
            bad = array[~finite][0]
            raise WeightsError(f"{source}: tensor '{name}' holds {int((~finite).sum())} non-finite value(s) ({bad})")
        if name.endswith(".running_var") and array.size and array.min() < 0:
            raise WeightsError(f"{source}: tensor '{name}' holds a negative variance ({array.min():g})")
        out[name] = array
    return out


def load(path: str | Path, ir: ModelIR) -> dict[str, np.ndarray]:
    """Read a canonical safetensors file, checked against ``ir``, as float32 arrays (see the module's notes)."""
    source = f"weights in {path}"
    return _checked_values(_read_file(Path(path), ir, source), source)


class InitRule(NamedTuple):
    """How one canonical tensor starts: ``normal`` (N(0, scale)), ``uniform`` (U(-scale, scale)), or the constant
    ``ones`` / ``zeros`` (scale 0)."""

    distribution: Literal["normal", "uniform", "ones", "zeros"]
    scale: float


def init_rule(net: LoweredNetwork) -> dict[str, InitRule]:
    """The reference init of every canonical tensor of ``net``, in forward order: the one place the rule is written.

    conv and each CondConv expert N(0, sqrt(2 / fan_out)), fan_out = k*k*out // groups (a grouped conv's fan is
    per group, as a depthwise conv's); linear U(+-1/sqrt(out)); biases 0; BN weight 1, bias 0, mean 0, var 1.
    """
    rules: dict[str, InitRule] = {}
    for op in net.ops:
        for name in op.tensors():
            suffix = name.rsplit(".", 1)[1]
            if isinstance(op, Conv | CondConv) and suffix == "weight":
                fan_out = op.kernel * op.kernel * op.out_channels // op.groups
                rules[name] = InitRule("normal", math.sqrt(2.0 / fan_out))
            elif isinstance(op, Linear) and suffix == "weight":
                rules[name] = InitRule("uniform", 1.0 / math.sqrt(op.out_features))
            elif suffix in ("weight", "running_var"):  # BN scale and variance
                rules[name] = InitRule("ones", 0.0)
            else:  # biases, BN shift and mean
                rules[name] = InitRule("zeros", 0.0)
    return rules


def initial(ir: ModelIR, seed: int = 0) -> dict[str, np.ndarray]:
    """The reference init (`init_rule`) as canonical float32 arrays, reproducible from ``seed`` alone (numpy's
    PCG64, drawn in forward order): every backend's ``build(ir, seed=seed)`` without weights assigns exactly these,
    so the same seed gives the same network everywhere (a backbone takes its part of them)."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}
    for (name, shape), rule in zip(canonical_shapes(ir).items(), init_rule(lower(ir)).values(), strict=True):
        if rule.distribution == "normal":
            state[name] = rng.standard_normal(shape, dtype=np.float32)
            state[name] *= np.float32(rule.scale)
        elif rule.distribution == "uniform":
            state[name] = rng.uniform(-rule.scale, rule.scale, shape).astype(np.float32)
        else:
            state[name] = (np.ones if rule.distribution == "ones" else np.zeros)(shape, dtype=np.float32)
    return state


def fold_batch_norm(net: LoweredNetwork, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` with every BN that the lowering marks foldable (``folds_into``) folded into its conv.

    The conv's weight is scaled per output channel and it gains (or updates) ``<conv>.bias``; the BN's
    tensors are dropped. Arithmetic in float64, results in the conv weight's dtype, so an inference
    graph built from the folded tensors stays within float32 rounding of the unfolded network.
    """
    out = dict(state)
    for op in net.ops:
        if not isinstance(op, BatchNorm) or op.folds_into is None:
            continue
        bn = {name.rsplit(".", 1)[1]: np.asarray(out.pop(name), np.float64) for name in op.tensors()}
        scale = bn["weight"] / np.sqrt(bn["running_var"] + op.eps)
        shift = bn["bias"] - bn["running_mean"] * scale
        weight = np.asarray(out[f"{op.folds_into}.weight"])
        bias = out.get(f"{op.folds_into}.bias")
        if bias is not None:
            shift = shift + np.asarray(bias, np.float64) * scale
        out[f"{op.folds_into}.weight"] = (weight.astype(np.float64) * scale[:, None, None, None]).astype(weight.dtype)
        out[f"{op.folds_into}.bias"] = shift.astype(weight.dtype)
    return out


def read(weights: str | Path | Mapping[str, Any] | None, ir: ModelIR) -> dict[str, np.ndarray] | None:
    """What a backend's ``weights=`` argument holds, checked against ``ir``: a canonical safetensors path or a
    name -> tensor mapping (numpy arrays or framework tensors), as numpy; None stays None (random init)."""
    if weights is None:
        return None
    if isinstance(weights, str | Path):
        return load(weights, ir)
    validate(weights, ir)
    return _checked_values(state_of(weights), "weights")


def preprocessing(net: LoweredNetwork) -> dict[str, str]:
    """The input a network's weights expect, as metadata strings: written into imported weights files and into
    the models the backends emit (ONNX ``metadata_props``, the torch model's ``preprocessing`` attribute), as
    torchvision's weights carry their transforms. ``mean``/``std``: JSON lists, the input is
    (pixel / 255 - mean) / std; ``resolution``: the spec's evaluation size; ``crop`` and ``interpolation``: the
    held-out view of specdsl's trainer (automl's centre crop)."""
    _, height, width = net.input_shape
    return {
        "preprocessing.mean": json.dumps(list(net.normalization.mean)),
        "preprocessing.std": json.dumps(list(net.normalization.std)),
        "preprocessing.resolution": str(height) if height == width else f"{height}x{width}",
        "preprocessing.crop": "center: a square side * resolution / (resolution + 32) of the shorter side",
        "preprocessing.interpolation": "bilinear, antialiased",
    }


def import_file(
    ir: ModelIR, path: str | Path, format: str | None = None, *, skip_head: bool = False
) -> dict[str, np.ndarray]:
    """The canonical weights of ``ir`` from a downloaded checkpoint (timm, efficientnet-pytorch, keras, torchvision;
    the format detected from its tensor names unless given), as ``specdsl weights import`` reads it
    (`specdsl.interop.files`, which also gives the metadata; docs/weights.md)."""
    from specdsl.interop.files import import_file as read

    return read(ir, path, format, skip_head=skip_head)[0]
