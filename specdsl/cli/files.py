"""The one way the CLI writes files: staged privately, then published file by file, atomically.

Every command that writes (``build``, ``scale -o``, ``fmt -w``, ``plot``, ``info --plot``) and every
backend's ``emit(ir, out_dir, ...)`` writes into a private staging directory that `staged_output`
creates *inside* the destination directory (so it is on the same filesystem and ``os.replace`` is
atomic). When the command succeeds, `publish` moves each staged file to the same name in the
destination:

* every conflict is checked before anything moves: an existing file is replaced only with
  ``force``, a directory never is;
* ``force`` replaces exactly the file names the command produced; nothing else in the
  destination is touched, and the destination directory itself is never removed or renamed;
* all files are published or none: replaced originals are kept aside (hard links) until the last
  file is in place, and a failure part-way puts them back;
* an OS failure (read-only, full disk, a directory where a file should go, ...) becomes
  ``error: cannot write PATH: <reason>``, and the staging directory, and any directory created for
  the output, are removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from specdsl.errors import SpecError

_STAGING_PREFIX = ".specdsl-staging-"


def _umask_mode(base: int) -> int:
    """Temporary files are created private (0600/0700); give results the permissions a plain open() would."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def publish_permissions(root: Path) -> None:
    """Make ``root`` and everything under it readable as ordinary output (tempfile makes them private)."""
    for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
        path.chmod(_umask_mode(0o777 if path.is_dir() else 0o666))


def cannot_write(path: Path | str, error: OSError) -> SpecError:
    reason = error.strerror or str(error) or errno.errorcode.get(error.errno or 0, "unknown error")
    return SpecError(f"cannot write {path}: {reason}")


def _os_error(exc: BaseException, staging: Path | None) -> OSError | None:
    """The OS failure behind an exception raised while writing, if there is one.

    Libraries that write files wrap OS errors in their own exception types: the OSError may be
    chained, or only quoted in the message (safetensors: "... (os error 28)"). A failure while the
    staging filesystem has no space left is reported as a full disk whatever its type.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    quoted = re.search(r"\(os error (\d+)\)", str(exc))
    if quoted:
        code = int(quoted.group(1))
        return OSError(code, os.strerror(code))
    if staging is not None:
        with contextlib.suppress(OSError):
            if os.statvfs(staging).f_bavail == 0:
                return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


@dataclass
class Staging:
    """A private directory to write a command's output into, and what publishing it wrote."""

    path: Path
    destination: Path
    published: list[Path] = field(default_factory=list)


def _create_directory(directory: Path, created: list[Path]) -> None:
    """mkdir -p, appending each directory it makes to ``created`` (outermost first) as it goes, so a
    failure part-way can remove exactly those."""
    missing = []
    probe = directory
    while not os.path.lexists(probe) and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _remove_directories(created: list[Path]) -> None:
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()


@contextlib.contextmanager
def staged_output(destination: Path | str, *, force: bool, shown: str | None = None) -> Iterator[Staging]:
    """Yield a `Staging` whose ``path`` the command writes into; on success its files are published into
    ``destination`` (created if missing). ``shown`` is the path named in errors (default: ``destination``)."""
    destination = Path(destination)
    shown = shown or str(destination)
    created: list[Path] = []
    root: Path | None = None
    try:
        try:
            _create_directory(destination, created)
            root = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=destination))
            staging = Staging(path=root / "new", destination=destination)
            staging.path.mkdir()
        except OSError as error:
            raise cannot_write(shown, error) from None
        try:
            yield staging
        except SpecError:
            raise
        except Exception as exc:
            found = _os_error(exc, root)
            if found is None:
                raise
            raise cannot_write(shown, found) from None
        staging.published = publish(staging.path, destination, force=force, aside=root / "old")
    except BaseException:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        _remove_directories(created)
        raise
    shutil.rmtree(root, ignore_errors=True)


def _staged_files(staging: Path) -> list[Path]:
    """Files (and links) under ``staging``, relative to it; directories are recreated as needed."""
    return sorted(path.relative_to(staging) for path in staging.rglob("*") if path.is_symlink() or not path.is_dir())


def _check_target(destination: Path, relative: Path) -> bool:
    """Whether ``destination/relative`` exists (and would be replaced); raises if it cannot be a file."""
    parent = destination
    for part in relative.parts[:-1]:
        parent = parent / part
        if os.path.lexists(parent) and not parent.is_dir():
            raise cannot_write(parent, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
    target = destination / relative
    if not os.path.lexists(target):
        return False
    if target.is_dir() and not target.is_symlink():
        raise cannot_write(target, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    return True


def _keep_aside(target: Path, backup: Path) -> None:
    """A second name for the file about to be replaced (no copy where the filesystem has hard links)."""
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError:
        shutil.copy2(target, backup, follow_symlinks=False)


def publish(staging: Path, destination: Path, *, force: bool, aside: Path) -> list[Path]:
    """Move every file under ``staging`` to the same relative name under ``destination``: all or nothing.

    ``aside`` is an empty-or-missing directory on the destination's filesystem for the originals
    that ``force`` replaces, kept until every new file is in place.
    """
    files = _staged_files(staging)
    existing = [relative for relative in files if _check_target(destination, relative)]
    if existing and not force:
        first = destination / existing[0]
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise SpecError(f"output exists{more}; pass --force to replace it", path=str(first))
    done: list[tuple[Path, Path | None]] = []  # (published target, its original kept aside)
    created: list[Path] = []
    current = destination
    try:
        aside.mkdir(exist_ok=True)
        backups: dict[Path, Path] = {}
        for index, relative in enumerate(existing):
            target = destination / relative
            backups[relative] = aside / str(index)
            _keep_aside(target, backups[relative])
            mode = target.lstat().st_mode
            if stat.S_ISREG(mode):  # a replaced file keeps its permissions
                (staging / relative).chmod(stat.S_IMODE(mode))
        for relative in files:
            source = staging / relative
            if relative not in backups and not source.is_symlink():
                source.chmod(_umask_mode(0o666))
            current = destination / relative
            _create_directory(current.parent, created)
            os.replace(source, current)
            done.append((current, backups.get(relative)))
    except BaseException as error:  # an OS failure, or Ctrl-C part-way: put everything back
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is None:
                    target.unlink()
                else:
                    os.replace(backup, target)
        _remove_directories(created)
        if isinstance(error, OSError):
            raise cannot_write(current, error) from None
        raise
    return [destination / relative for relative in files]


def write_file(path: Path | str, content: str | bytes, *, force: bool) -> Path:
    """Write one file through the staging and publishing above; returns the path written."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise cannot_write(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    with staged_output(path.parent, force=force, shown=str(path)) as staging:
        if isinstance(content, str):
            (staging.path / path.name).write_text(content, encoding="utf-8")
        else:
            (staging.path / path.name).write_bytes(content)
    return path
