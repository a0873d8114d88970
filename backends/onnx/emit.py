"""Write ``<name>.onnx``, and ``<name>.onnx.data`` beside it when the weights are too large to keep inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx_ir

from specdsl.calibration import Calibration
from specdsl.ir import ModelIR
from specdsl.passes.lower import lower

from ..naming import file_stem
from .model import Weights, build

#: Initializer bytes above which tensors go to an external data file. Protobuf cannot serialise a message of
#: 2 GiB or more; l2's folded float32 weights (1.92 GB) sit within 11% of that, and writing or parsing a
#: protobuf holds the whole message in memory again, so large models go external well before the limit.
EXTERNAL_DATA_BYTES = 1 << 30


def initializer_bytes(model: onnx_ir.Model) -> int:
    return sum(value.const_value.nbytes for value in model.graph.initializers.values() if value.const_value)


def save(model: onnx_ir.Model, path: Path) -> list[Path]:
    """Write ``model`` to ``path`` (and its external data file, if large); returns the files written."""
    if initializer_bytes(model) <= EXTERNAL_DATA_BYTES:
        onnx_ir.save(model, path)
        return [path]
    data = path.with_name(f"{path.name}.data")
    onnx_ir.save(model, path, external_data=data.name)
    return [path, data]


def emit(
    ir: ModelIR,
    out_dir: str | Path,
    *,
    weights: Weights = None,
    seed: int = 0,
    quantize: str | None = None,
    calibration: Calibration | None = None,
    **options: Any,
) -> list[Path]:
    """Write the model of ``ir`` into ``out_dir`` as ``<name>.onnx``; ``options`` are `build`'s (dtype,
    dynamic_size, opset, keep_bn). Nothing else is written there but its external data file.

    ``quantize="int8"`` with ``calibration`` (`specdsl.training.calibration.load`): the static int8 QDQ model of
    `quantize.quantize` instead, checked against fp32 on the calibration's held-out images."""
    from . import quantize as int8

    int8.check_quantize(
        calibrated=calibration is not None,
        method=calibration.method if calibration else None,
        quantize=quantize,
        **options,
    )
    model = build(ir, weights=weights, seed=seed, **options)
    if quantize is not None:
        assert calibration is not None  # int8.check
        model = int8.quantize(model, lower(ir), calibration)
    return save(model, Path(out_dir) / f"{file_stem(ir.name)}.onnx")
