"""Weights from published implementations, as canonical numpy tensors: one module per source.

* `efficientnet_pytorch`: ``efficientnet_pytorch.EfficientNet`` (V1, MBConv only).
* `keras_applications`: ``keras.applications`` EfficientNet (V1) and EfficientNetV2.
* `geffnet`: gen-efficientnet 1.0.2, the MBConv family (Lite, EdgeTPU, CondConv, MixNet, MnasNet, MobileNet...).

Each source module says where every canonical tensor lives in the source model; `gather` walks the
lowered network, converts and checks. Import the source into the spec that describes it
(``specs/b0.spec`` for ``efficientnet-b0``): shapes are checked, hyper-parameters such as BN
epsilon and padding come from the spec.
"""

#: The file formats ``specdsl weights import`` reads, as ``--from`` names them (`files`; ``specdsl``: canonical
#: weights, for ``train --init``). Here, importing nothing, so the CLI parser needs no numpy.
FORMATS = ("timm", "efficientnet-pytorch", "keras", "torchvision", "specdsl")
