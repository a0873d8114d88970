"""Another input size, one mechanism for every backend: the lowering's pads are for its ``input_shape``; at any other
size, an op marked ``dynamic_padding`` pads as TensorFlow SAME (`specdsl.passes.lower.same_pads`) and every other
op keeps its pads, which hold at every size. No backend re-resolves or re-lowers.

Each backend says this natively: PyTorch recomputes SAME at run time from the input it is given (the standalone
file's ``same_padding``, held to ``same_pads`` by a test), ONNX ``--dynamic-size`` graphs give those convs
``auto_pad=SAME_UPPER``, and Keras, whose input size is fixed when the model is built, pads with `pads_at` for the
size asked (explicit pads, exact on every Keras backend).
"""

from __future__ import annotations

from specdsl.passes.lower import CondConv, Conv, Pads, same_pads


def pads_at(op: Conv | CondConv, height: int, width: int) -> Pads:
    """``op``'s pads (top, bottom, left, right) for an input of ``height`` x ``width``: the lowering's at the size it
    was lowered for and wherever they do not depend on the size, TF SAME's elsewhere."""
    if not op.dynamic_padding or (height, width) == tuple(op.in_shape[1:]):
        return op.pads
    return (*same_pads(height, op.kernel, op.stride), *same_pads(width, op.kernel, op.stride))
