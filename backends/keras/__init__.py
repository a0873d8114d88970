"""Keras 3 backend: a lowered network as a functional ``keras.Model`` whose layer names are the canonical op names.

`model` translates the lowering op by op with stock Keras layers (NHWC; runs on Keras's TensorFlow,
PyTorch and JAX backends); `weights` moves canonical tensors in and out (names and layouts at the
edge); `emit` writes ``.keras`` files, SavedModels and (`tflite`) TFLite files.
"""

from __future__ import annotations

from specdsl.backends import refusing

from . import emit as _emit
from . import model as _model
from .emit import EXPORTS
from .model import translate
from .tflite import check_quantize
from .weights import layer_name, op_name, state_of

#: The contract's checks on every keyword (`specdsl.backends.refusing`).
build = refusing("keras", _model.build)
emit = refusing("keras", _emit.emit)

__all__ = ["EXPORTS", "build", "check_quantize", "emit", "layer_name", "op_name", "state_of", "translate"]
