"""Weights files as people download them, read into canonical weights: `import_file` and `inspect_file`.

A file is read by its container, told from its first bytes, never from its name: safetensors (through
`specdsl.weights`' checked reader, never unpickled), HDF5 (h5py; TensorFlow is not needed) and PyTorch's
pickles (``torch.save``: zip or legacy), read only with ``torch.load(weights_only=True)`` so that a file that
needs more than tensors and plain containers to load is refused, not run. The format (whose names the
tensors carry) is told from the names unless given; each format's name rule is its importer's
(`geffnet` for timm, `efficientnet_pytorch`, `keras_applications`, `torchvision`), applied to the file's
tensors. See docs/weights.md.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from specdsl.interop import FORMATS, efficientnet_pytorch, geffnet, keras_applications, torchvision
from specdsl.interop._common import TORCH_SUFFIXES, gather
from specdsl.interop.keras_layout import VARIABLES
from specdsl.ir import ModelIR
from specdsl.passes.lower import BatchNorm, Conv, Linear, Op, lower, weighted_ops
from specdsl.weights import WeightsError, _checked_values, _read_file, initial, preprocessing

_HDF5 = b"\x89HDF\r\n\x1a\n"
#: Keys under which training scripts nest a model's state dict inside a checkpoint dict.
_NESTED = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")


def _container(path: Path, source: str) -> str:
    """``safetensors``, ``hdf5`` or ``pickle``, from the file's first bytes; only a regular file is opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise WeightsError(f"{source}: cannot read: {error.strerror or error}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a directory with an OSError of its own
        os.close(fd)
        raise WeightsError(f"{source}: not a regular file")
    with os.fdopen(fd, "rb") as data:
        head = data.read(9)
    if head.startswith(_HDF5):
        return "hdf5"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    raise WeightsError(f"{source}: not a weights file this specdsl reads (safetensors, HDF5 or a torch.save file)")


def _needs(module: str, source: str) -> Any:
    """An optional package a container needs, or a one-line diagnostic naming it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise WeightsError(f"{source}: reading it needs {module} (pip install {module})") from None


def _read_pickle(path: Path, source: str) -> dict[str, Any]:
    """A ``torch.save`` file's tensors, loaded with ``weights_only=True`` (nothing in the file is run)."""
    import pickle

    torch = _needs("torch", source)

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        what = f"the Python object {found.group(1)}" if found else "more than tensors and plain containers"
        raise WeightsError(
            f"{source}: refused: loading it needs {what}, which torch.load(weights_only=True) does not build "
            "(a pickle that builds objects can run code; only tensors and plain containers are read)"
        ) from None
    except Exception as error:  # zip, pickle and storage errors each have their own type
        raise WeightsError(f"{source}: not a readable torch.save file ({type(error).__name__})") from None
    while isinstance(obj, Mapping) and not any(hasattr(v, "shape") for v in obj.values()):
        nested = next((obj[key] for key in _NESTED if isinstance(obj.get(key), Mapping)), None)
        if nested is None:
            break
        obj = nested
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source}: holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    return {str(name): value for name, value in obj.items() if hasattr(value, "shape")}


def _read_hdf5(path: Path, source: str) -> dict[str, np.ndarray]:
    """A Keras weights file's arrays: a legacy ``.h5`` (``layer/variable``, from its ``weight_names``) or a Keras 3
    ``.weights.h5`` (``layers/<class>_<n>/vars/<i>``, kept as such)."""
    h5py = _needs("h5py", source)
    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)
            if "layer_names" in root.attrs:
                tensors = {}
                for layer in root.attrs["layer_names"]:
                    layer = layer.decode() if isinstance(layer, bytes) else str(layer)
                    group = root[layer]
                    for weight in group.attrs.get("weight_names", []):
                        weight = weight.decode() if isinstance(weight, bytes) else str(weight)
                        short = weight.rsplit("/", 1)[-1].split(":")[0].replace("depthwise_kernel", "kernel")
                        tensors[f"{layer}/{short}"] = np.asarray(group[weight])
                return tensors
            tensors = {}
            if "layers" in root:
                for layer, group in root["layers"].items():
                    for index, value in group.get("vars", {}).items():
                        tensors[f"layers/{layer}/vars/{index}"] = np.asarray(value)
            return tensors
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise WeightsError(f"{source}: not a readable Keras HDF5 weights file ({error})") from None


def read_tensors(path: str | Path) -> tuple[str, dict[str, Any]]:
    """(container, the file's tensors by name) for any file `import_file` reads."""
    path, source = Path(path), f"weights file {path}"
    container = _container(path, source)
    if container == "safetensors":
        return container, _read_file(path, None, source)
    if container == "hdf5":
        return container, _read_hdf5(path, source)
    tensors = _read_pickle(path, source)
    if tensors and all(name.startswith("module.") for name in tensors):  # saved from DistributedDataParallel
        tensors = {name.removeprefix("module."): value for name, value in tensors.items()}
    return container, tensors


def detect(container: str, names: list[str], source: str) -> str:
    """The format whose names a file's tensors carry."""
    if container == "hdf5":
        return "keras"
    if "stem.conv.weight" in names:
        return "specdsl"
    if any(name.startswith(("_conv_stem.", "_blocks.")) for name in names):
        return "efficientnet-pytorch"
    if any(name.startswith("features.0.0.") for name in names):
        return "torchvision"
    if any(name.startswith("conv_stem.") for name in names):
        return "timm"
    first = f", first '{names[0]}'" if names else ""
    raise WeightsError(
        f"{source}: cannot tell its format from its {len(names)} tensor names{first}; "
        f"pass --from ({', '.join(FORMATS)})"
    )


def _keras3_names(ir: ModelIR, tensors: Mapping[str, Any]) -> dict[str, Any]:
    """A Keras 3 ``.weights.h5``'s ``layers/<class>_<n>/vars/<i>`` renamed to the keras.applications layer names.

    Keras 3 names a model's layers in the file by class (``conv2d``, ``conv2d_1`` ...) in the model's layer
    order and their variables by position, in the order VARIABLES lists them; keras.applications builds its
    weighted layers in the lowering's forward order, so the n-th conv of the lowering is ``conv2d_<n>``.
    """
    if not any(name.startswith("layers/") for name in tensors):
        return dict(tensors)
    located = keras_applications.layer_of(ir, [])  # V1 names first; V2 when the lowering has fused blocks
    if any(block.kind.value != "mbconv" for block in ir.blocks):
        located = keras_applications.layer_of(ir, ["x_dwconv2/"])
    counts: dict[str, int] = {}
    renamed: dict[str, Any] = {}
    claimed: set[str] = set()
    from specdsl.interop._common import role

    for op in weighted_ops(lower(ir)):
        kind = {BatchNorm: "batch_normalization", Linear: "dense"}.get(type(op))
        if kind is None:
            kind = "depthwise_conv2d" if isinstance(op, Conv) and op.depthwise else "conv2d"
        count = counts.get(kind, 0)
        counts[kind] = count + 1
        group = f"layers/{kind}" + (f"_{count}" if count else "")
        layer = located(op, *role(op, ir))
        for index, suffix in enumerate(name.rsplit(".", 1)[1] for name in op.tensors()):
            key = f"{group}/vars/{index}"
            if key in tensors:
                renamed[f"{layer}/{VARIABLES[op.op][suffix]}"] = tensors[key]
                claimed.add(key)
    renamed.update({k: v for k, v in tensors.items() if k not in claimed and not _is_preprocessing(k)})
    return renamed


def _copy(_op: Op, _suffix: str, tensor: Any) -> np.ndarray:
    return np.asarray(tensor)


def to_canonical(
    ir: ModelIR, tensors: Mapping[str, Any], format: str, *, label: str, skip_head: bool = False
) -> dict[str, np.ndarray]:
    """A file's tensors in ``format``'s names as the canonical weights of ``ir`` (the head from the reference init
    with ``skip_head``), values checked."""
    if format == "specdsl":  # canonical names already: matched and checked by the same walk
        state = gather(ir, tensors, lambda op, _role, _block: op.name, TORCH_SUFFIXES, _copy, label, ".",
                       skip_head=skip_head)  # fmt: skip
    elif format == "timm":
        state = geffnet.import_weights(tensors, ir, label=label, skip_head=skip_head)
    elif format == "efficientnet-pytorch":
        state = efficientnet_pytorch.import_weights(tensors, ir, label=label, skip_head=skip_head)
    elif format == "torchvision":
        state = torchvision.import_weights(tensors, ir, label=label, skip_head=skip_head)
    elif format == "keras":
        source = {k: v for k, v in _keras3_names(ir, tensors).items() if not _is_preprocessing(k)}
        state = keras_applications.import_variables(source, ir, label=label, skip_head=skip_head)
    else:
        raise WeightsError(f"unknown weights format {format!r}; one of {', '.join(FORMATS)}")
    if skip_head:
        fresh = initial(ir)
        state.update({name: fresh[name] for name in fresh if name.startswith("classifier.")})
    return _checked_values(state, label)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_file(
    ir: ModelIR, path: str | Path, format: str | None = None, *, skip_head: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The canonical weights of ``ir`` from a downloaded checkpoint, and the metadata to store beside them
    (source format, the file's sha256, the preprocessing, the lowering's network hash)."""
    if format is not None and format not in FORMATS:
        raise WeightsError(f"unknown weights format {format!r}; one of {', '.join(FORMATS)}")
    container, tensors = read_tensors(path)
    format = format or detect(container, list(tensors), f"weights file {path}")
    state = to_canonical(ir, tensors, format, label=f"{path} ({format} format)", skip_head=skip_head)
    metadata = {
        "source.format": format,
        "source.sha256": sha256_of(path),
        "source.file": Path(path).name,
        "network.sha256": lower(ir).sha256(),
        "head": "initialised (--skip-head)" if skip_head else "imported",
        **preprocessing(lower(ir)),
    }
    return state, metadata


def _is_preprocessing(name: str) -> bool:
    """A Keras file's input-normalisation state (mean, variance, count): not part of the network. Keras numbers
    layer names per process (``normalization_6`` when other models were built first)."""
    return _KERAS_PREPROCESSING.match(name) is not None


_KERAS_PREPROCESSING = re.compile(r"(layers/)?(normalization|rescaling)(_\d+)?/")


def _is_statistic(name: str) -> bool:
    """A BN running statistic (not a parameter), in any format's names; Keras 3 stores a BN's as vars 2 and 3."""
    if name.startswith("layers/batch_normalization"):
        return name.endswith(("/vars/2", "/vars/3"))
    last = name.rsplit(".", 1)[-1].rsplit("/", 1)[-1]
    return last in ("running_mean", "running_var", "moving_mean", "moving_variance")


def inspect_file(path: str | Path, format: str | None = None) -> dict[str, Any]:
    """What a weights file is: its container, format, tensor and parameter counts, and the shipped specs whose
    canonical tensors it fills exactly (every tensor matched by name rule and shape, none left over)."""
    from specdsl.frontend.loader import library_specs, load_document
    from specdsl.passes.analysis import analyze
    from specdsl.passes.resolve import resolve
    from specdsl.weights import canonical_shapes

    container, tensors = read_tensors(path)
    format = format or detect(container, list(tensors), f"weights file {path}")
    network = {name: value for name, value in tensors.items() if not _is_preprocessing(name)}
    network = {name: value for name, value in network.items() if not name.endswith("num_batches_tracked")}
    params = sum(int(np.prod(value.shape)) for name, value in network.items() if not _is_statistic(name))
    fits = []
    for name in library_specs():
        ir = resolve(load_document(name))
        shapes = canonical_shapes(ir)
        if len(shapes) != len(network) or analyze(ir).params != params:
            continue
        try:
            to_canonical(ir, tensors, format, label=str(path))
        except WeightsError:
            continue
        fits.append(name)
    return {
        "file": str(path),
        "container": container,
        "format": format,
        "tensors": len(network),
        "params": params,
        "fits": fits,
    }
