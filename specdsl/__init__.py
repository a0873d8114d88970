"""specdsl: a declarative architecture-spec compiler for EfficientNet-family ConvNets.

The pipeline, front to back::

    grammar/*.lark --(frontend)--> SpecDocument --(passes.resolve)--> ModelIR --(passes.lower)--> LoweredNetwork
        --(backends)--> model

``import specdsl`` stays cheap: names are imported on first use, and nothing
here imports a deep-learning framework.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# A checkout keeps grammar/, specs/ and backends/ beside specdsl/ (pyproject's package-dir maps them into the
# package); an installed copy holds them inside. When this file really lives in a checkout (imported from the
# repository root, or through an editable install, whose link tree points here), the package's submodules are
# looked up in the checkout: specdsl/ first, then the folders beside it.
_here = os.path.dirname(os.path.realpath(__file__))
_root = os.path.dirname(_here)
if not os.path.isdir(os.path.join(_here, "grammar")) and os.path.isfile(os.path.join(_root, "grammar", "spec.lark")):
    __path__[:] = [_here, _root]

__version__ = "0.1.0"

__all__ = [
    "LoweredNetwork",
    "ModelIR",
    "Report",
    "SpecError",
    "analyze",
    "build",
    "load",
    "loads",
    "lower",
    "reference",
    "scale",
    "train",
    "weights",
]

_LAZY = {
    "SpecError": ("specdsl.errors", "SpecError"),
    "ModelIR": ("specdsl.ir", "ModelIR"),
    "Report": ("specdsl.passes.analysis", "Report"),
    "LoweredNetwork": ("specdsl.passes.lower", "LoweredNetwork"),
    "lower": ("specdsl.passes.lower", "lower"),
    "reference": ("specdsl.reference", None),
    "load": ("specdsl.api", "load"),
    "loads": ("specdsl.api", "loads"),
    "analyze": ("specdsl.api", "analyze"),
    "scale": ("specdsl.api", "scale"),
    "build": ("specdsl.api", "build"),
    "train": ("specdsl.api", "train"),
    "weights": ("specdsl.weights", None),
}

if TYPE_CHECKING:
    from specdsl import reference, weights
    from specdsl.api import analyze, build, load, loads, scale, train
    from specdsl.errors import SpecError
    from specdsl.ir import ModelIR
    from specdsl.passes.analysis import Report
    from specdsl.passes.lower import LoweredNetwork, lower


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'specdsl' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
