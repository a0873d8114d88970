"""Static int8 quantization of the folded fp32 graph with onnxruntime.quantization (docs/edge.md).

QDQ format (QuantizeLinear/DequantizeLinear pairs around float ops, which onnxruntime fuses into integer
kernels), per-channel symmetric int8 weights, per-tensor asymmetric uint8 activations, biases int32: the
U8S8 form onnxruntime's x86 kernels run fastest (symmetric int8 activations measured 1.07x fp32 on Lite0,
uint8 0.49x; docs/edge.md). The graph stays static, Pad-free and shape-arithmetic-free. The calibration
method is an option (`METHODS`).

**The float-kept rule** (`quantized_nodes`), decided on the lowering's ops, not on node patterns: int8 are

* every ``conv`` that reads a feature map (spatial input larger than 1x1): stem, expand, depthwise,
  project and head convs,
* every residual ``add``,
* ``relu`` and ``relu6`` activations (onnxruntime folds them into the conv's output range),
* the classifier's weights (a ``linear``: 28% of Lite0's weights; without it an int8 file is 0.48x the fp32
  one, not 0.25x). Its output, the logits, is dequantized to float32.

Everything else computes in float: the squeeze-excitation path (its pool, its two 1x1 convs on a 1x1 map and
the sigmoid gate that rescales every channel: an error in the gate multiplies the whole feature map; the two
convs' weights are stored int8 all the same, dequantized on load, `weight_only_nodes`), Swish,
hard-swish and the other smooth activations (their int8 forms are the collapses reported for B0 and
EdgeTPU models), CondConv and the pooling. tests/edge checks the rule;
benchmarks/edge.py measures what it costs and gains on B0 and Lite0.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir

from specdsl.calibration import Calibration, compare, in_batches
from specdsl.passes.lower import Activation, Add, Conv, Linear, LoweredNetwork

from .runtime import session

QUANTIZE = ("int8",)
METHODS = ("minmax", "entropy", "percentile")
#: Activations whose int8 form is exact up to rounding (a clamp onnxruntime folds into the conv).
INT8_ACTIVATIONS = frozenset({"relu", "relu6"})


def quantized_nodes(net: LoweredNetwork) -> list[str]:
    """The graph nodes (named as their ops) the float-kept rule quantizes; every other node stays float."""

    def quantized(op: object) -> bool:
        if isinstance(op, Conv):
            return op.in_shape[1] * op.in_shape[2] > 1  # not the SE convs on the pooled 1x1 map
        if isinstance(op, Activation):
            return op.function in INT8_ACTIVATIONS
        return isinstance(op, Add | Linear)

    return [op.name for op in net.ops if quantized(op)]


def weight_only_nodes(net: LoweredNetwork) -> list[str]:
    """The float convs whose weights are still stored as int8 (a DequantizeLinear feeds the float conv): the SE
    convs. Their activations stay float, so the gate keeps its accuracy, and the file keeps its int8 size."""
    return [op.name for op in net.ops if isinstance(op, Conv) and op.in_shape[1] * op.in_shape[2] == 1]


def _int8_weights(model: onnx.ModelProto, nodes: list[str]) -> None:
    """Replace the float weights of ``nodes`` by per-output-channel symmetric int8 weights and a DequantizeLinear."""
    from onnx import helper, numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    wanted = set(nodes)
    for node in list(model.graph.node):
        if node.name not in wanted or node.input[1] not in initializers:
            continue
        name = node.input[1]
        weight = numpy_helper.to_array(initializers[name]).astype(np.float32)
        scale = np.abs(weight).reshape(len(weight), -1).max(1) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        shaped = scale.reshape(-1, *[1] * (weight.ndim - 1))
        quantized = np.clip(np.rint(weight / shaped), -127, 127).astype(np.int8)
        model.graph.initializer.remove(initializers[name])
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{name}_quantized"),
                numpy_helper.from_array(scale, f"{name}_scale"),
                numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero_point"),
            ]
        )
        dequantize = helper.make_node(
            "DequantizeLinear",
            [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
            [f"{name}_dequantized"],
            name=f"{name}_DequantizeLinear",
            axis=0,
        )
        node.input[1] = f"{name}_dequantized"
        index = list(model.graph.node).index(node)
        model.graph.node.insert(index, dequantize)


class _Reader:
    """onnxruntime's CalibrationDataReader: the calibration images in equal batches, always in the same order. With
    ``CalibStridedMinMax`` = 1 onnxruntime calibrates batch by batch, merging ranges (or histograms), so memory is
    one batch's intermediate tensors however many images calibrate."""

    def __init__(self, name: str, images: np.ndarray, batch: int) -> None:
        self.batches = [{name: images[i : i + batch]} for i in range(0, len(images) - batch + 1, batch)]
        self.batches += [{name: images[i : i + 1]} for i in range(len(self.batches) * batch, len(images))]
        self.position, self.stop = 0, len(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.position, self.stop = start_index, min(end_index, len(self.batches))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= self.stop:
            return None
        self.position += 1
        return self.batches[self.position - 1]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs advice (pre-processing) on the root logger: not for a CLI user."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def check_quantize(*, calibrated: bool, method: str | None = None, **options: Any) -> None:
    """Refuse a quantization request this backend cannot honour, before any work (``options``: the build's)."""
    quantize = options.get("quantize")
    if quantize is None:
        if calibrated:
            raise ValueError("calibration data is for --quantize int8")
        return
    if quantize not in QUANTIZE:
        hint = " (float16 ONNX: --dtype float16)" if quantize == "float16" else ""
        raise ValueError(f"the ONNX backend quantizes to {', '.join(QUANTIZE)}, not {quantize}{hint}")
    if not calibrated:
        raise ValueError("int8 needs calibration images: add --calibration DATA (an ImageFolder or builtin:digits)")
    if method is not None and method not in METHODS:
        raise ValueError(f"calibration methods: {', '.join(METHODS)}; not {method!r}")
    given = [flag for flag, key in (("--dtype", "dtype"), ("--keep-bn", "keep_bn"), ("--dynamic-size", "dynamic_size"))
             if options.get(key) not in (None, False, "float32")]  # fmt: skip
    if given:
        raise ValueError(f"int8 is quantized from the folded, static float32 graph: drop {', '.join(given)}")


def quantize(
    model: onnx_ir.Model, net: LoweredNetwork, calibration: Calibration, *, keep_float: bool = True
) -> onnx_ir.Model:
    """``model`` (float32, BN folded, static size) as a QDQ int8 model calibrated on ``calibration.images``; the
    fp32 and int8 models are compared on the check images, and the result is in ``calibration.measured`` and in
    the model's metadata (``quantization.*``). ``keep_float=False`` quantizes every op onnxruntime can (no
    float-kept rule): what benchmarks/edge.py compares the rule against."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    proto = onnx_ir.to_proto(model)
    input_name = proto.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="specdsl-quantize-") as scratch:
        fp32, int8 = Path(scratch, "fp32.onnx"), Path(scratch, "int8.onnx")
        onnx.save(proto, fp32)
        with _quiet():
            quantize_static(
                str(fp32),
                str(int8),
                # histograms need equal shapes within one collection: batches of 1 there
                _Reader(input_name, calibration.images, batch=8 if calibration.method == "minmax" else 1),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=quantized_nodes(net) if keep_float else None,
                calibrate_method=methods[calibration.method],
                extra_options={"WeightSymmetric": True, "CalibStridedMinMax": 1},
            )
        quantized = onnx.load(int8)
    if keep_float:
        _int8_weights(quantized, weight_only_nodes(net))
    measured = measure(proto, quantized, calibration)
    calibration.measured.update(measured)
    result = onnx_ir.from_proto(quantized)
    props = dict(model.metadata_props)
    props.update(
        {
            "dtype": "int8",
            "quantization.format": "QDQ: per-channel symmetric int8 weights, per-tensor uint8 activations",
            "quantization.calibration": f"{calibration.method} on {len(calibration.images)} images of "
            f"{calibration.data}",
            **{f"quantization.{key}": f"{value:.6g}" for key, value in measured.items()},
        }
    )
    result.metadata_props.clear()
    result.metadata_props.update(props)
    result.producer_name, result.producer_version = model.producer_name, model.producer_version
    return result


#: QDQ's two ops, which TensorRT's ONNX parser reads as explicit quantization.
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """`tensorrt.problems` of a quantized model, with QDQ's two ops allowed: static, Pad-free, shape-arithmetic-free."""
    from .tensorrt import problems

    return [problem for problem in problems(model) if not any(f"ai.onnx.{op} is not" in problem for op in QDQ_OPS)]


def measure(fp32: onnx.ModelProto, int8: onnx.ModelProto, calibration: Calibration) -> dict[str, Any]:
    """Run both models (onnxruntime, CPU) on the check images: agreement and accuracies."""
    outputs = []
    for proto in (fp32, int8):
        run = session(onnx_ir.from_proto(proto), threads=1)
        name = run.get_inputs()[0].name
        outputs.append(in_batches(lambda x, run=run, name=name: run.run(None, {name: x})[0], calibration.check_images))
    return compare(outputs[0], outputs[1], calibration.check_labels)
