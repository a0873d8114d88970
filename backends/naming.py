"""Names of emitted files, shared by every backend (no framework imported)."""

from __future__ import annotations

import keyword
import re


def module_name(name: str) -> str:
    """A file/module name for ``name``: lowercase, [a-z0-9_], not starting with a digit, not a keyword."""
    out = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "model"
    if out[0].isdigit():
        out = f"model_{out}"
    return f"{out}_" if keyword.iskeyword(out) else out
