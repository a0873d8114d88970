"""What the CLI reads: specs (files, shipped names, stdin), `--root` directories, and flags blamed as flags."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from specdsl import api, limits
from specdsl.errors import SpecError
from specdsl.frontend.loader import library_specs
from specdsl.ir import ModelIR

STDIN = "-"


def roots(directories: Sequence[str]) -> list[Path]:
    """``--root DIR`` values, each checked to be a directory."""
    for directory in directories:
        if not Path(directory).is_dir():
            raise SpecError("not a directory", path=f"--root {directory}")
    return [Path(directory) for directory in directories]


def _no_spec() -> SpecError:
    return SpecError(
        "no SPEC given: name a spec file or a shipped spec, or pipe a spec on stdin",
        hint=f"shipped specs (`specdsl list`): {', '.join(library_specs())}; e.g. `specdsl scale b0 --phi 3`",
    )


def read_stdin() -> str:
    """The spec piped on stdin; a terminal or empty input is "no SPEC given", not a syntax error."""
    if sys.stdin is None or sys.stdin.isatty():
        raise _no_spec()
    data = sys.stdin.buffer.read(limits.MAX_SPEC_BYTES + 1)
    if len(data) > limits.MAX_SPEC_BYTES:
        raise SpecError(f"spec on stdin exceeds {limits.MAX_SPEC_BYTES} bytes", path="<stdin>")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec is not valid UTF-8 (byte {exc.start})", path="<stdin>") from None
    if not text.strip():
        raise _no_spec()
    return text


def load(argument: str | None, root_dirs: Sequence[str] = ()) -> ModelIR:
    """A spec named on the command line: a path, a shipped name, or stdin (``-``, or nothing at all)."""
    extra = roots(root_dirs)
    if argument is None or argument == STDIN:
        return api.loads(read_stdin(), "<stdin>", roots=extra)
    return api.load(argument, roots=extra)


def flags(*pairs: tuple[str, object]) -> str:
    """``--phi 3 --name x``: the flags given (value not None), as typed."""
    return " ".join(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}" for flag, value in pairs
                    if value is not None)  # fmt: skip


@contextlib.contextmanager
def blamed_on(given: str) -> Iterator[None]:
    """A spec that loaded fine can only fail inside this block because of the flags ``given``:
    report the error against them (``--resolution 20: error: ...``), not against the spec line they override."""
    try:
        yield
    except SpecError as error:
        if not given:
            raise
        raise SpecError(error.message, path=given, hint=error.hint) from None


def check_range(flag: str, value: int | None, low: int, high: int, unit: str = "") -> None:
    if value is not None and not low <= value <= high:
        raise SpecError(f"must be between {low} and {high}{unit}", path=f"{flag} {value}")
