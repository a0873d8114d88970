"""The name of everything a build writes, shared by every backend and the CLI (no framework imported)."""

from __future__ import annotations

import keyword
import re


def file_stem(name: str) -> str:
    """The stem of every file a build writes for the network ``name`` and of its default folder (`build/<stem>`).

    One convention for all: lowercase, runs of anything but letters and digits become one '_', no leading digit,
    no Python keyword. The PyTorch backend's ``<stem>.py`` must be importable as a module, so its name must be a
    Python identifier; the ``.safetensors``, ``.pt2``, ``.onnx`` and ``.keras`` files and the folder carry the same
    stem, so ``efficientnet-b0`` is ``efficientnet_b0.py``, ``efficientnet_b0.onnx``, ``build/efficientnet_b0/``.
    The stem is always one plain path component: `build/<stem>` stays inside `build/`.
    """
    out = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "model"
    if out[0].isdigit():
        out = f"model_{out}"
    return f"{out}_" if keyword.iskeyword(out) else out
