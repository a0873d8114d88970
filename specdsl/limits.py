"""Upper bounds on everything a spec can ask for.

They are checked on the numbers themselves, before any block list, tensor or
model is created, so a hostile spec (``r1000000000``, a 10^9-pixel input) is
rejected in microseconds. Each bound leaves ample room above the largest
published network (EfficientNet-L2: 5504-wide head, 8256-wide expansions,
800 px input, 480M parameters).
"""

from __future__ import annotations

from typing import Final

MAX_SPEC_BYTES: Final = 1 << 20  # a spec file larger than 1 MiB is not a spec
MAX_NUMBER_CHARS: Final = 64  # characters in one number literal (Python refuses ints of more than 4300 digits)
MAX_EXTENDS_DEPTH: Final = 16
MAX_STAGES: Final = 64
MAX_REPEATS: Final = 1024  # per stage, after depth scaling
MAX_BLOCKS: Final = 4096  # whole network, after depth scaling
MAX_CHANNELS: Final = 32768  # any width, expanded widths included
MAX_KERNEL: Final = 31
MAX_EXPANSION: Final = 64
MAX_CONV_GROUPS: Final = 16  # channel groups of one conv: MixConv kernels (k3.5.7), grouped 1x1 (a1.1, p1.1)
MAX_EXPERTS: Final = 64  # CondConv experts per conv, after `experts_multiplier`
MAX_RESOLUTION: Final = 4096  # pixels per side
MIN_RESOLUTION: Final = 8
MAX_CLASSES: Final = 100_000
MAX_INPUT_CHANNELS: Final = 64
MAX_MULTIPLIER: Final = 64.0  # width / depth multipliers, per-stage depth multipliers
MAX_PHI: Final = 32.0
#: Weights (parameters and BN statistics) plus the activations of one inference at batch 1, at float32 (the dtype
#: every backend initialises in): what a build allocates at least. EfficientNet-L2 needs 2.3 GiB.
MAX_BUILD_BYTES: Final = 1 << 32
MAX_BATCH: Final = 1 << 20

#: Exposed for `docs/language.md` and `specdsl info --limits`.
ALL: Final[dict[str, float]] = {
    "spec file bytes": MAX_SPEC_BYTES,
    "characters in a number literal": MAX_NUMBER_CHARS,
    "extends depth": MAX_EXTENDS_DEPTH,
    "stages": MAX_STAGES,
    "repeats per stage (after scaling)": MAX_REPEATS,
    "blocks (after scaling)": MAX_BLOCKS,
    "channels (any width, after scaling)": MAX_CHANNELS,
    "kernel": MAX_KERNEL,
    "expansion": MAX_EXPANSION,
    "channel groups of one conv (k3.5.7, a1.1, p1.1)": MAX_CONV_GROUPS,
    "CondConv experts (after the multiplier)": MAX_EXPERTS,
    "resolution (pixels)": MAX_RESOLUTION,
    "classes": MAX_CLASSES,
    "input channels": MAX_INPUT_CHANNELS,
    "width/depth multiplier": MAX_MULTIPLIER,
    "|phi|": MAX_PHI,
    "bytes to build (weights + one inference's activations, float32)": MAX_BUILD_BYTES,
}
