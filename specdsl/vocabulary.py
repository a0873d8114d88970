"""Closed vocabularies shared by the spec document and the resolved IR."""

from __future__ import annotations

from enum import StrEnum


class Activation(StrEnum):
    SILU = "silu"
    RELU = "relu"
    RELU6 = "relu6"
    HARD_SWISH = "hard_swish"
    HARD_SIGMOID = "hard_sigmoid"


class Padding(StrEnum):
    """``same``: TensorFlow SAME (asymmetric, extra pixel bottom/right). ``symmetric``: (k-1)//2 each side."""

    SAME = "same"
    SYMMETRIC = "symmetric"


class BlockKind(StrEnum):
    MBCONV = "mbconv"
    FUSED = "fused"
    CONV = "conv"


class Dialect(StrEnum):
    """Which published block-string convention a spec's ``stages`` are written in."""

    AUTOML = "automl"  # google/automl EfficientNetV2: s1, i/o, c1 = Fused-MBConv
    TPU = "tpu"  # tensorflow/tpu EfficientNet: s11/s22, i/o, c1 = MBConv without depthwise
    TIMM = "timm"  # timm: ds_/ir_/er_/cn_ prefix, c = output channels
