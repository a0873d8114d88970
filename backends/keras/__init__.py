"""Keras 3 backend: a lowered network as a functional ``keras.Model`` whose layer names are the canonical op names.

`model` translates the lowering op by op with stock Keras layers (NHWC; runs on Keras's TensorFlow,
PyTorch and JAX backends); `weights` moves canonical tensors in and out (names and layouts at the
edge); `emit` writes ``.keras`` files, SavedModels and (`tflite`) TFLite files.
"""

from __future__ import annotations

from .emit import EXPORTS, emit
from .model import build, translate
from .tflite import check_quantize
from .weights import layer_name, op_name, state_of

__all__ = ["EXPORTS", "build", "check_quantize", "emit", "layer_name", "op_name", "state_of", "translate"]
