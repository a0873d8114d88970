"""The one exception users see: a compiler-style diagnostic pointing into a spec file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
            out += f"\n    {self.text}"
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out
