"""Atomic output: everything is written to a temporary sibling, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from specdsl.errors import SpecError


def _umask_mode(base: int) -> int:
    """Temporary files are created private (0600/0700); give results the permissions a plain open() would."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def publish_permissions(root: Path) -> None:
    """Make `root` and everything under it readable as ordinary output (tempfile makes them private)."""
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for path in paths:
        path.chmod(_umask_mode(0o777 if path.is_dir() else 0o666))


def refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise SpecError("output exists; pass --force to overwrite", path=str(path))


def write_text(path: Path, text: str, *, force: bool) -> None:
    """Write a file so that readers see the old content or the new, never a half-written one."""
    refuse_overwrite(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        publish_permissions(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def staged_directory(target: Path, *, force: bool) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `target`, on failure it vanishes."""
    refuse_overwrite(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        publish_permissions(staging)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
