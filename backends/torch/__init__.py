"""PyTorch backend: a lowered network as an ``nn.Module`` whose state_dict keys are the canonical weight names.

`layers` holds the modules (torch only, copied verbatim into emitted files), built from the
lowering's JSON form; `model` builds one from an IR; `emit` writes the standalone module, weights
and export.
"""

from __future__ import annotations

from specdsl.backends import refusing

from . import emit as _emit
from . import model as _model
from .emit import EXPORTS
from .layers import EfficientNet
from .model import network_json

#: The contract's checks on every keyword (`specdsl.backends.refusing`).
build = refusing("torch", _model.build)
emit = refusing("torch", _emit.emit)

__all__ = ["EXPORTS", "EfficientNet", "build", "emit", "network_json"]
