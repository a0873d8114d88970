"""IR -> the plain config table that `layers.EfficientNet` is built from: a field-for-field copy, no decisions."""

from __future__ import annotations

from specdsl.ir import ModelIR

from .layers import BlockConfig, NetworkConfig


def network_config(ir: ModelIR) -> NetworkConfig:
    return NetworkConfig(
        in_channels=ir.in_channels,
        padding=str(ir.padding),
        bn_eps=ir.batch_norm.eps,
        bn_momentum=ir.batch_norm.momentum,
        stem_channels=ir.stem.out_channels,
        stem_kernel=ir.stem.kernel,
        stem_stride=ir.stem.stride,
        stem_activation=str(ir.stem.activation),
        resolution=ir.stem.input_size,
        stages=tuple(
            tuple(
                BlockConfig(
                    kind=str(block.kind),
                    kernel=block.kernel,
                    stride=block.stride,
                    in_channels=block.in_channels,
                    out_channels=block.out_channels,
                    expand_channels=block.expand_channels,
                    se_channels=block.se_channels,
                    activation=str(block.activation),
                    residual=block.residual,
                    drop_path=block.drop_path,
                    input_size=block.input_size,
                )
                for block in stage.blocks
            )
            for stage in ir.stages
        ),
        head_channels=ir.head.conv_channels,
        head_activation=str(ir.head.activation),
        dropout=ir.head.dropout,
        classes=ir.head.classes,
    )
