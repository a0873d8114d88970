"""PyTorch backend: a lowered network as an ``nn.Module`` whose state_dict keys are the canonical weight names.

`layers` holds the modules (torch only, copied verbatim into emitted files), built from the
lowering's JSON form; `model` builds one from an IR; `emit` writes the standalone module, weights
and export.
"""

from __future__ import annotations

from .emit import EXPORTS, emit
from .layers import EfficientNet
from .model import build, network_json

__all__ = ["EXPORTS", "EfficientNet", "build", "emit", "network_json"]
