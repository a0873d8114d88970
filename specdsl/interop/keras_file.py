"""specdsl's entries in a ``.keras`` file's ``metadata.json``: written by the Keras backend, read without Keras.

A functional model's config cannot carry the preprocessing its weights expect (`specdsl.weights.preprocessing`),
and a custom layer would break loading with ``safe_mode=True`` without specdsl. A ``.keras`` file is a zip of
``metadata.json``, ``config.json`` and ``model.weights.h5``; Keras writes ``metadata.json`` (its version and the
save date) and never reads it back, so extra keys there survive ``keras.saving.load_model`` untouched and leave the
model unchanged. Framework-free: zipfile and json only.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path

METADATA = "metadata.json"
PREFIX = "preprocessing."


def label(saved: str | Path, path: str | Path, entries: Mapping[str, str]) -> None:
    """Write ``saved`` (a ``.keras`` file Keras wrote) to ``path`` with ``entries`` added to its ``metadata.json``,
    every other member copied as stored and in order. ``path`` appears whole or not at all (a temporary file beside
    it, then ``os.replace``)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(saved) as source, zipfile.ZipFile(partial, "w") as target:
            for info in source.infolist():
                copy = zipfile.ZipInfo(info.filename, info.date_time)
                copy.compress_type, copy.external_attr = info.compress_type, info.external_attr
                if info.filename == METADATA:
                    target.writestr(copy, json.dumps({**json.loads(source.read(info)), **entries}))
                    continue
                copy.file_size = info.file_size  # so the writer chooses zip64 exactly when the member needs it
                with source.open(info) as reader, target.open(copy, "w") as writer:
                    shutil.copyfileobj(reader, writer, 1 << 20)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def preprocessing_of(path: str | Path) -> dict[str, str]:
    """The ``preprocessing.*`` entries of a ``.keras`` file the Keras backend wrote (the same keys and values as the
    ONNX file's ``metadata_props`` and the torch model's ``preprocessing``); empty for a file without them."""
    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(archive.read(METADATA))
    return {key: value for key, value in metadata.items() if key.startswith(PREFIX)}
