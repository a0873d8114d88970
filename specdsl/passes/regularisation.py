"""Regularisation, stated once for the whole toolchain: each dropout and drop-path op's rate, and which tensors weight
decay applies to.

`resolve` gives each block its drop-path rate with `block_drop_path` (the spec's own setting; the lowering copies it
onto the ``drop_path`` op), and the trainer asks `rates` for a progressive stage's values and `decayed_tensors` for
the optimizer, both over the lowering's ops: nothing re-resolves a spec or chooses by op name. Framework-free.
"""

from __future__ import annotations

from specdsl.passes.lower import CondConv, Conv, Dropout, DropPath, Linear, LoweredNetwork

#: The ops whose kernel (``<name>.weight``) weight decay applies to.
_KERNEL_OPS = (Conv, CondConv, Linear)


def block_drop_path(drop_path: float, global_index: int, total_blocks: int) -> float:
    """Stochastic depth grows with depth: block i of N (0-based, over the whole network) drops with
    ``drop_path * i / N``, as EfficientNet's builders do."""
    return drop_path * global_index / total_blocks


def rates(net: LoweredNetwork, *, dropout: float, drop_path: float, total_blocks: int) -> dict[str, float]:
    """Op name -> rate of every dropout and drop-path op of ``net`` for head dropout ``dropout`` and drop-path
    setting ``drop_path``. With the spec's own values these are the ops' ``rate`` fields; a progressive-learning
    stage asks for its own (``total_blocks``: the network's block count, `ModelIR.blocks`)."""
    found: dict[str, float] = {}
    for op in net.ops:
        if isinstance(op, Dropout):
            found[op.name] = dropout
        elif isinstance(op, DropPath):
            found[op.name] = block_drop_path(drop_path, op.block, total_blocks)
    return found


def dropout_name(net: LoweredNetwork) -> str:
    """The name of the classifier's dropout op (a classifier has exactly one)."""
    (name,) = (op.name for op in net.ops if isinstance(op, Dropout))
    return name


def decayed_tensors(net: LoweredNetwork) -> set[str]:
    """The tensors weight decay applies to: every kernel (conv, each CondConv expert, linear), never a bias or a
    batch norm's scale, shift or statistics. google/automl (efficientnetv2 ``hparams.py``: L2 on every trainable
    variable but ``weight_decay_exclude = '.*(bias|gamma|beta).*'``) and tensorflow/tpu's efficientnet
    ``main.py``, which trains the CondConv models, both decay CondConv kernels."""
    return {f"{op.name}.weight" for op in net.ops if isinstance(op, _KERNEL_OPS)}
