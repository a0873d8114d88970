"""The run directory's writer rules, as ``specdsl build``'s (framework-free).

* Every file the trainer writes is written to a temporary file in its directory and renamed over the
  old one (`write_atomic`): a reader, a crash or a full disk never leaves half a file, and a symlink at
  that name is replaced itself, never followed out of the directory.
* ``--force`` removes only the files the trainer writes (`TRAINER_FILES`, `CHECKPOINT_FILES`); a file of
  the user's in ``checkpoint/`` (which the trainer replaces as a whole after every epoch) or a directory
  where a trainer's file goes is refused before anything is touched (`check_writable`).
* An OS failure (read-only, full disk, ...) is ``error: cannot write PATH: reason``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from specdsl.errors import SpecError
from specdsl.output.files import cannot_write, os_errors_as_cannot_write, publish_permissions

SPEC_FILE = "spec.spec"  # the resolved spec a run trained, every key spelled out
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"
#: What the trainer writes in RUN_DIR, and what ``--force`` may replace there.
BEST_WEIGHTS = "best.safetensors"  # the best epoch's canonical weights
BEST_JSON = "best.json"  # its evaluation, the class names and the view (`checkpoint.BestFile`)
TRAINER_FILES = (SPEC_FILE, METRICS_FILE, BEST_WEIGHTS, BEST_JSON, "plot.png")
#: What the trainer writes in RUN_DIR/checkpoint/ (replaced as a whole after every epoch).
CHECKPOINT_FILES = (
    "weights.safetensors",
    "ema.safetensors",
    "state.safetensors",
    "state.json",
    BEST_WEIGHTS,
    BEST_JSON,
)
#: How a damaged run is left behind, in every message about one.
AFRESH = "start afresh with --force (it replaces only the trainer's files)"


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(temporary)`` in ``path``'s directory, then rename it to ``path``: all of the file or none."""
    temporary: Path | None = None
    try:
        with os_errors_as_cannot_write(path, path.parent):
            descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
            os.close(descriptor)
            temporary = Path(name)
            write(temporary)
            publish_permissions(temporary)
            os.replace(temporary, path)
            temporary = None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink()
    return path


def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def damaged(path: Path, what: str) -> SpecError:
    """The diagnostic for a state file the run cannot resume from: which file, what is wrong, what to do."""
    return SpecError(f"{what}: the run cannot resume; {AFRESH}", path=str(path))


#: The largest text state file (state.json, metrics.jsonl, best.json, spec.spec) read back: far above any the
#: trainer writes (a 350-epoch metrics.jsonl is ~200 KB), so a bigger one is not the trainer's, and is not read.
TEXT_LIMIT = 256 * 2**20


def read_state(path: Path, limit: int | None = None, problem: Callable[[Path, str], SpecError] = damaged) -> bytes:
    """A state file's bytes: only a regular file (a FIFO or a directory is an error, never a hang), of at most
    ``limit`` bytes. ``problem`` words the error (default: the run cannot resume)."""
    try:
        if not os.path.lexists(path):
            raise problem(path, "missing")
        found = path.stat()
        if not stat.S_ISREG(found.st_mode):
            raise problem(path, "not a regular file")
        if limit is not None and found.st_size > limit:
            raise problem(path, f"{found.st_size:,} bytes, more than the trainer ever writes there ({limit:,})")
        return path.read_bytes()
    except OSError as error:
        raise problem(path, f"cannot read it ({error.strerror or error})") from None


def _is_directory(path: Path) -> bool:
    return stat.S_ISDIR(path.lstat().st_mode)


def check_writable(run_dir: Path) -> None:
    """Refuse, before anything is written, a run directory where the trainer would lose a user's file: a
    directory where one of its files goes, or anything but its own files in ``checkpoint/``."""
    for name in TRAINER_FILES:
        if os.path.lexists(run_dir / name) and _is_directory(run_dir / name):
            raise cannot_write(run_dir / name, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    checkpoint = run_dir / CHECKPOINT_DIR
    if not os.path.lexists(checkpoint) or checkpoint.is_symlink():
        return  # a link is replaced itself, its target never touched
    if not _is_directory(checkpoint):
        raise cannot_write(checkpoint, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
    for entry in sorted(checkpoint.iterdir()):
        if entry.name not in CHECKPOINT_FILES or _is_directory(entry):
            raise SpecError(
                f"holds '{entry.name}', which the trainer did not write and would delete (it replaces "
                f"{CHECKPOINT_DIR}/ after every epoch): move it out of the run directory",
                path=str(checkpoint),
            )


def clear_run(run_dir: Path) -> None:
    """Remove the trainer's files of a previous run (``--force``): links themselves, nothing else."""
    check_writable(run_dir)
    checkpoint = run_dir / CHECKPOINT_DIR
    with os_errors_as_cannot_write(run_dir, run_dir):
        for name in TRAINER_FILES:
            (run_dir / name).unlink(missing_ok=True)
        if checkpoint.is_symlink():
            checkpoint.unlink()
        elif checkpoint.is_dir():
            for name in CHECKPOINT_FILES:
                (checkpoint / name).unlink(missing_ok=True)
            checkpoint.rmdir()
