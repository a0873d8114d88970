"""Backends translate the resolved IR (`specdsl.ir.ModelIR`) for one framework each.

Installed as ``specdsl.backends``. A backend is a module with::

    build(ir, *, weights=None, seed=0, **options) -> framework model
    emit(ir, out_dir, *, weights=None, seed=0, **options) -> list[Path]

This module is the backends' contract, as plain data (importing it imports no framework): `BACKENDS` says, per
backend, what it needs installed, which `OPTIONS` it takes, the files ``emit`` writes and what ``export=`` adds.
The CLI generates ``specdsl build``'s flags from it and its pre-flight reads the file names; a test checks the
table against the backends' signatures and what they write.

The one rule for every backend: an option it does not take is refused, never silently ignored, by one exception
(`UnsupportedOption`) whether it comes from the command line, ``specdsl.build`` or ``backend.emit``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, Literal, TypeVar

from specdsl.errors import SpecError

Function = TypeVar("Function", bound=Callable[..., Any])


class BackendUnavailable(Exception):
    """The backend is unknown, or its framework is not installed."""


class UnsupportedOption(SpecError, TypeError):
    """An option the backend does not take: a diagnostic on the command line (a `SpecError`), a bad keyword
    argument in Python (a `TypeError`); one message form for both."""

    def __init__(self, backend: str, names: Iterable[str], function: str | None = None) -> None:
        names = list(names)
        if function is None:  # the command line: the flags as typed
            subject, spelled = f"the {backend} backend", [option_flag(name) for name in names]
        else:
            subject, spelled = f"the {backend} backend's {function}()", names
        super().__init__(f"{subject} has no option {', '.join(spelled)}")
        self.backend, self.names = backend, names


@dataclass(frozen=True)
class Option:
    """One build option: a keyword argument of the backends that take it and one ``specdsl build`` flag
    (``--keep-bn`` for ``keep_bn``), shared by every backend that takes it."""

    name: str
    help: str
    group: str | None = None  # the section of `specdsl build --help`; None: the general options
    type: type[int] | type[str] | None = None  # None: an on/off flag
    choices: tuple[int | str, ...] | None = None
    metavar: str | None = None
    const: str | None = None  # the value of the flag given without one (`--features`)
    #: How the CLI turns the flag into the keyword: None passes its value as is; "backbone" parses it
    #: (`specdsl.cli.features`), "calibration" reads the images it names (`specdsl.cli.edge`; ``calibration_*``
    #: settings are no keyword of any backend).
    reader: Literal["backbone", "calibration"] | None = None


@dataclass(frozen=True)
class Export:
    """What ``export=<name>`` adds to a build."""

    suffix: str  # after `naming.file_stem` (a SavedModel is a directory: its saved_model.pb stands for it)
    help: str


@dataclass(frozen=True)
class Backend:
    """One backend's contract."""

    module: str
    requires: tuple[str, ...]  # importable top-level packages
    extra: str  # the pip extra that installs them
    options: tuple[str, ...]  # names in OPTIONS that its `emit` takes
    outputs: tuple[str, ...]  # the files `emit` writes, as suffixes after `naming.file_stem`
    exports: Mapping[str, Export]  # what `export=` accepts, in the order the CLI lists them


_BACKBONE = "backbone (docs/features.md)"
_ONNX = "onnx backend"
_QUANTIZE = "quantization (onnx: int8; keras --export tflite: float16, int8; docs/edge.md)"

BACKENDS: Mapping[str, Backend] = MappingProxyType(
    {
        "torch": Backend(
            module="specdsl.backends.torch",
            requires=("torch", "safetensors", "numpy"),
            extra="torch",
            options=("deploy", "export", "features", "out_indices"),
            outputs=(".py", ".safetensors"),
            exports={"pt2": Export(".pt2", "a torch.export program, any batch size at the spec's resolution")},
        ),
        "keras": Backend(
            module="specdsl.backends.keras",
            requires=("keras", "safetensors", "numpy"),
            extra="keras",
            options=("export", "features", "out_indices", "quantize", "calibration", "int8_io"),
            outputs=(".keras",),
            exports={
                "saved_model": Export("_saved_model/saved_model.pb", "a TensorFlow SavedModel"),
                "tflite": Export(".tflite", "a TFLite file, quantized with --quantize"),
            },
        ),
        "onnx": Backend(
            module="specdsl.backends.onnx",
            requires=("onnx", "onnx_ir", "onnxruntime", "safetensors", "numpy"),
            extra="onnx",
            options=("features", "out_indices", "dtype", "dynamic_size", "opset", "keep_bn", "quantize", "calibration"),
            outputs=(".onnx",),
            exports={},
        ),
    }
)


def _export_help() -> str:
    listed = [
        f"{name} ({backend}: {export.help})"
        for backend, entry in BACKENDS.items()
        for name, export in entry.exports.items()
    ]
    return "also export: " + ", ".join(listed)


#: Every build option, in the order `specdsl build --help` lists them.
OPTIONS: Mapping[str, Option] = MappingProxyType(
    {
        option.name: option
        for option in (
            Option("deploy", "fold batch norm into convolutions"),
            Option("export", _export_help(), type=str),
            Option(
                "features",
                "build a backbone returning feature maps: strides (the default when the flag has no value), "
                "expansion, or op names / stages.N separated by commas",
                _BACKBONE,
                type=str,
                metavar="SELECTION",
                const="strides",
                reader="backbone",
            ),
            Option(
                "out_indices",
                "keep these taps only (0-based, negative from the end), as timm",
                _BACKBONE,
                type=str,
                metavar="I,J,...",
                reader="backbone",
            ),
            Option(
                "dtype",
                "float16: weights and arithmetic, float32 input/output",
                _ONNX,
                type=str,
                choices=("float32", "float16"),
            ),
            Option("dynamic_size", "accept any input height and width", _ONNX),
            Option(
                "opset", "ONNX opset (default: 18)", _ONNX, type=int, choices=tuple(range(17, 22)), metavar="{17..21}"
            ),
            Option("keep_bn", "keep BatchNormalization nodes (default: folded)", _ONNX),
            Option(
                "quantize",
                "quantize the model file (int8 needs --calibration)",
                _QUANTIZE,
                type=str,
                choices=("int8", "float16"),
            ),
            Option(
                "calibration",
                "calibration images: an ImageFolder or builtin:digits",
                _QUANTIZE,
                type=str,
                metavar="DATA",
                reader="calibration",
            ),
            Option(
                "calibration_images",
                "calibrate on N train images (default: 200)",
                _QUANTIZE,
                type=int,
                metavar="N",
                reader="calibration",
            ),
            Option(
                "calibration_method",
                "onnx: range estimate (minmax)",
                _QUANTIZE,
                type=str,
                choices=("minmax", "entropy", "percentile"),
                reader="calibration",
            ),
            Option("int8_io", "tflite int8: int8 input and output (EdgeTPU)", _QUANTIZE),
        )
    }
)


def option_flag(name: str) -> str:
    """The command-line flag of the option ``name``: ``keep_bn`` -> ``--keep-bn``."""
    return "--" + name.replace("_", "-")


def names() -> list[str]:
    return sorted(BACKENDS)


def contract(name: str) -> Backend:
    """The contract of the backend ``name``; an unknown name is `BackendUnavailable`."""
    entry = BACKENDS.get(name)
    if entry is None:
        raise BackendUnavailable(f"unknown backend '{name}'; choose one of: {', '.join(names())}")
    return entry


def load_backend(name: str) -> ModuleType:
    entry = contract(name)
    missing = [pkg for pkg in entry.requires if importlib.util.find_spec(pkg) is None]
    if missing:
        raise BackendUnavailable(f"backend '{name}' needs {', '.join(missing)}: pip install 'specdsl[{entry.extra}]'")
    return importlib.import_module(entry.module)


def lacking(backend: str, options: Iterable[str]) -> list[str]:
    """The names in ``options`` that are build options (`OPTIONS`) the backend does not take."""
    taken = contract(backend).options
    return [name for name in options if name in OPTIONS and name not in taken]


def refusing(backend: str, function: Function, *, passes_to: Callable[..., Any] | None = None) -> Function:
    """``function`` (a backend's ``build`` or ``emit``), raising `UnsupportedOption` for a keyword argument the
    backend does not take: a build option its contract lacks, or one ``function`` has no parameter for (its
    ``**options`` go on to ``passes_to``, whose keyword arguments count then)."""
    accepted: set[str] = set()
    for candidate in (function, passes_to):
        if candidate is None:
            break
        parameters = inspect.signature(candidate).parameters.values()
        accepted |= {p.name for p in parameters if p.kind == inspect.Parameter.KEYWORD_ONLY}
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
            break

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        refused = [name for name in kwargs if name not in accepted or lacking(backend, [name])]
        if refused:
            raise UnsupportedOption(backend, refused, function.__name__)
        return function(*args, **kwargs)

    return checked  # type: ignore[return-value]
