"""The one way specdsl writes files: staged privately, then published file by file, atomically.

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

Signals: the CLI runs under `stop_signals`, so SIGTERM and SIGHUP raise `Terminated` where the
program is, as SIGINT raises KeyboardInterrupt, and the cleanup above runs. The cleanup itself and a
part-way publish's roll-back run `uninterrupted`: a signal that arrives then is raised when they are
done. A process killed outright (SIGKILL, a power cut) cannot clean up, so each staging directory
holds an ``owner`` file, locked (``flock``) for as long as its process lives and naming host, pid,
process start time and boot; the next write into the same directory removes a staging directory
only when it can prove it is a dead specdsl process's: the lock is free, the host is this one and
that process (pid and start time) is gone. Anything else whose name merely looks like staging is
left alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specdsl.errors import SpecError

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so a stale staging directory is never provably dead
    fcntl = None  # type: ignore[assignment]

_STAGING_PREFIX = ".specdsl-staging-"
#: The lock and owner record inside each staging directory.
_OWNER = "owner"

#: Signals that stop a command like Ctrl-C does (see `stop_signals`).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program was (as SIGINT raises KeyboardInterrupt), so every cleanup
    written for Ctrl-C runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals(threading.local):
    depth = 0  # nesting of `uninterrupted` sections
    pending: int | None = None  # a signal that arrived inside one
    received: int | None = None  # the first stop signal of this `stop_signals` block, even if its exception was lost


_signals = _Signals()


def _stop(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _on_signal(signum: int, frame: object) -> None:
    _signals.received = _signals.received or signum
    if _signals.depth:
        _signals.pending = _signals.pending or signum
        return
    raise _stop(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Run the block with SIGINT, SIGTERM and SIGHUP raising (KeyboardInterrupt, `Terminated`), deferred while an
    `uninterrupted` section runs; the previous handlers come back afterwards. Only the main thread has handlers;
    a signal already ignored (``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal the process was started with ignored stays ignored: `nohup` (SIGHUP), `cmd &` in a script (SIGINT).
    handled = [signum for signum in STOP_SIGNALS if signal.getsignal(signum) is not signal.SIG_IGN]
    previous = {signum: signal.signal(signum, _on_signal) for signum in handled}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _quiet_about_stops(sys.unraisablehook)
    _signals.received = None
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _quiet_about_stops(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    """A signal can land where Python cannot raise (a finalizer, a C callback): Python then reports the exception
    as 'ignored' and carries on. Our stop exceptions are not reported there; `stop_received` still tells, and
    `publish` refuses to move anything after one."""

    def hook_without_stops(unraisable: Any) -> object:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _signals.received is not None:
            return None
        return hook(unraisable)

    return hook_without_stops


def stop_received() -> int | None:
    """The stop signal this `stop_signals` block received, if any (its exception may have been swallowed)."""
    return _signals.received


def _raise_if_stopped() -> None:
    if _signals.received is not None:
        raise _stop(_signals.received)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A section a stop signal must not cut in half (removing staging, rolling a publish back): a signal that
    arrives meanwhile is raised when the outermost such section ends."""
    _signals.depth += 1
    try:
        yield
    finally:
        _signals.depth -= 1
        if _signals.depth == 0 and _signals.pending is not None:
            signum, _signals.pending = _signals.pending, None
            raise _stop(signum)


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks after boot, /proc/PID/stat field 22); None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _owner_record() -> dict[str, object]:
    pid = os.getpid()
    return {"tool": "specdsl", "host": socket.gethostname(), "pid": pid, "start": _start_time(pid), "boot": _boot_id()}


def _claim(root: Path) -> int | None:
    """Create ``root/owner``, lock it for this process's lifetime, then record who we are (in that order, so a
    reader that gets the lock and finds a full record knows the owner has let go)."""
    if fcntl is None:
        return None
    fd = os.open(root / _OWNER, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a filesystem without locks: no record, so this directory is never taken for stale
        os.close(fd)
        return None
    try:
        os.write(fd, json.dumps(_owner_record()).encode())
    except BaseException:
        os.close(fd)
        raise
    return fd


def _provably_dead(owner: object) -> bool:
    """Whether an owner record names a specdsl process on this host that no longer runs."""
    here = _owner_record()
    if not isinstance(owner, dict) or owner.get("tool") != "specdsl" or owner.get("host") != here["host"]:
        return False
    pid, start, boot = owner.get("pid"), owner.get("start"), owner.get("boot")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if boot and here["boot"] and boot != here["boot"]:
        return True  # recorded before the last reboot
    if start is None:  # no /proc: only a pid that no longer exists is proof
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    return _start_time(pid) != start  # gone, or the pid now belongs to a later process


def remove_stale_staging(directory: Path) -> list[Path]:
    """Remove the staging directories in ``directory`` left by specdsl processes that died without cleaning up
    (SIGKILL, a power cut): only those whose owner lock is free and whose owner provably no longer runs."""
    removed: list[Path] = []
    if fcntl is None:
        return removed
    try:
        entries = [entry for entry in os.scandir(directory) if entry.name.startswith(_STAGING_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            fd = os.open(path / _OWNER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live owner: BlockingIOError
            if stat.S_ISREG(os.fstat(fd).st_mode) and _provably_dead(json.loads(os.read(fd, 65536))):
                with uninterrupted():
                    shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)
    return removed


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


@contextlib.contextmanager
def os_errors_as_cannot_write(path: Path | str, directory: Path | None) -> Iterator[None]:
    """An OS failure (also one a library wraps, as safetensors does) while writing ``path`` becomes
    ``cannot write PATH: reason``; ``directory`` is probed for a full disk."""
    try:
        yield
    except SpecError:
        raise
    except Exception as error:
        found = os_error_behind(error, directory)
        if found is None:
            raise
        raise cannot_write(path, found) from None


def os_error_behind(exc: BaseException, staging: Path | None) -> OSError | None:
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
    lock: int | None = None
    try:
        try:
            with uninterrupted():
                _create_directory(destination, created)
                remove_stale_staging(destination)
                root = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=destination))
                lock = _claim(root)
            staging = Staging(path=root / "new", destination=destination)
            staging.path.mkdir()
        except OSError as error:
            raise cannot_write(shown, error) from None
        with os_errors_as_cannot_write(shown, root):
            yield staging
        staging.published = publish(staging.path, destination, force=force, aside=root / "old")
    except BaseException:
        with uninterrupted():
            _discard(root, lock)
            _remove_directories(created)
        raise
    with uninterrupted():
        _discard(root, lock)


def _discard(root: Path | None, lock: int | None) -> None:
    """Remove a staging directory, then let go of its owner lock (in that order: never unlocked while it exists)."""
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
    if lock is not None:
        os.close(lock)


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
    _raise_if_stopped()  # a stop whose exception was swallowed still publishes nothing
    files = _staged_files(staging)
    existing = [relative for relative in files if _check_target(destination, relative)]
    if existing and not force:
        raise _output_exists(destination, existing)
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
        with uninterrupted():
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


def _output_exists(destination: Path, existing: list[Path]) -> SpecError:
    more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
    return SpecError(f"output exists{more}; pass --force to replace it", path=str(destination / existing[0]))


def preflight(destination: Path | str, planned: list[Path], *, force: bool) -> None:
    """Before a command does its work: the refusals `publish` would give for these relative paths (an existing
    output without ``force``, a directory where a file goes), so a long build is not run only to be refused.
    `publish` still checks what was actually written."""
    destination = Path(destination)
    if not destination.is_dir():
        return  # created by the write (or refused by it: `staged_output` says why)
    existing = [relative for relative in planned if _check_target(destination, relative)]
    if existing and not force:
        raise _output_exists(destination, existing)
