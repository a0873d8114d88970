"""The one exception users see: a compiler-style diagnostic pointing into a spec file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: Offending text is shown at most this wide: a long line is cut around the error's column.
EXCERPT_WIDTH = 100


def excerpt(line: str, index: int = 0, width: int = EXCERPT_WIDTH) -> str:
    """``line`` stripped, or, when it is longer than ``width``, the ``width`` characters around ``line[index]``
    with ``…`` where text was cut (so the character the column points at is always shown)."""
    start = len(line) - len(line.lstrip())
    text = line.strip()
    if len(text) <= width:
        return text
    index = min(max(index - start, 0), len(text) - 1)
    left = max(0, min(index - width // 2, len(text) - width))
    cut = text[left : left + width]
    return ("…" if left > 0 else "") + cut + ("…" if left + width < len(text) else "")


def printable(text: str) -> str:
    """Control characters (a NUL in a name, say) shown escaped, not sent to the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else " " if c == "\t" else c.encode("unicode_escape").decode() for c in text)


def shorten(text: str, width: int = 40) -> str:
    """User text quoted inside a message: at most ``width`` characters, then ``…``."""
    return text if len(text) <= width else text[:width] + "…"


class SourceSpan(BaseModel):
    """Where a piece of a spec came from: 1-based line and column, plus the text found there."""

    model_config = ConfigDict(frozen=True)

    path: str
    line: int
    column: int
    text: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class SpecError(Exception):
    """Bad input. Rendered as ``path:line:col: error: message`` followed by the offending text."""

    def __init__(
        self,
        message: str,
        span: SourceSpan | None = None,
        *,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.path = span.path if span else path
        self.line = span.line if span else None
        self.column = span.column if span else None
        self.text = span.text if span else None

    def __str__(self) -> str:
        if self.span is not None:
            where = f"{self.span}: "
        elif self.path:
            where = f"{self.path}: "
        else:
            where = ""
        out = f"{where}error: {self.message}"
        if self.text:
            out += f"\n    {printable(excerpt(self.text) if len(self.text) > EXCERPT_WIDTH + 2 else self.text)}"
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out
