"""Text -> `RawSpec`: the .spec grammar applied, values typed, every item located.

Nothing here knows what a key means; that is `document.py`'s job. Only lark
is imported, so the front end runs without any deep-learning framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import NamedTuple

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from specdsl import limits
from specdsl.errors import SourceSpan, SpecError, excerpt, shorten

Scalar = int | float | str | bool | None


@dataclass(frozen=True)
class RawValue:
    value: Scalar | list[Scalar] | dict[str, Scalar]
    span: SourceSpan


class StageLine(NamedTuple):
    """One block string of the `stages` section; ``continues``: it is not the first of a `[a, b]` group."""

    text: str
    span: SourceSpan
    continues: bool = False


@dataclass
class RawSpec:
    """One file as written: no extends merged, no defaults filled in."""

    path: str
    top: dict[str, RawValue] = field(default_factory=dict)
    sections: dict[str, dict[str, RawValue]] = field(default_factory=dict)
    section_spans: dict[str, SourceSpan] = field(default_factory=dict)
    stages: list[StageLine] | None = None
    stages_span: SourceSpan | None = None
    end_lines: dict[str, int] = field(default_factory=dict)  # section -> line of its closing brace
    comments: dict[int, str] = field(default_factory=dict)  # line -> comment text, kept by the formatter


@cache
def _grammar(name: str, *, positions: bool = True) -> Lark:
    """Grammars are constants; building one costs ~20 ms, so build each once per process. ``positions``: tree
    nodes carry source spans (tokens always carry their line and column)."""
    text = resources.files("specdsl.grammar").joinpath(name).read_text(encoding="utf-8")
    return Lark(text, parser="lalr", propagate_positions=positions, maybe_placeholders=False)


def block_parser() -> Lark:
    """Block strings are located by their tokens' columns alone: no node spans, a third less parse time."""
    return _grammar("block.lark", positions=False)


def _line_of(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return excerpt(lines[line - 1], column - 1) if 0 < line <= len(lines) else ""


_LAST_WORD = re.compile(r"([a-z_][a-z0-9_]*)\s*$")


def _open_sections(text: str, end: int) -> list[tuple[str, int]]:
    """The sections whose '{' is still open at offset ``end``: (name, line), outermost first."""
    stack: list[tuple[str, int]] = []
    line, quoted, comment = 1, False, False
    for index in range(min(end, len(text))):
        char = text[index]
        if char == "\n":
            line, quoted, comment = line + 1, False, False
        elif comment:
            continue
        elif quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "#":
            comment = True
        elif char == "{":
            word = _LAST_WORD.search(text, max(0, index - 200), index)
            stack.append((word.group(1) if word else "?", line))
        elif char == "}" and stack:
            stack.pop()
    return stack


def _unclosed(stack: list[tuple[str, int]]) -> str:
    name, line = stack[-1]
    return f"section '{shorten(name)}' opened on line {line} has no closing '}}'"


def _describe(exc: UnexpectedInput, text: str) -> str:
    if isinstance(exc, UnexpectedCharacters):
        return f"unexpected character {text[exc.pos_in_stream]!r}"
    token = exc.token if isinstance(exc, UnexpectedToken) else None
    if token is None or token.type == "$END":
        stack = _open_sections(text, len(text))
        return f"unexpected end of file: {_unclosed(stack)}" if stack else "unexpected end of file"
    if token.type == "LBRACE":
        stack = _open_sections(text, token.start_pos or 0)
        if stack:
            return f"unexpected '{{': {_unclosed(stack)} (sections do not nest)"
        return "unexpected '{': a section is a name then '{' (e.g. `stem { channels = 32 }`)"
    if token.type == "RBRACE" and not _open_sections(text, token.start_pos or 0):
        return "unexpected '}': no section is open here"
    expected = sorted(exc.expected)
    hint = ""
    if "EQUAL" in expected and token.type != "EQUAL":
        hint = " (expected '=' after a key)"
    elif "RBRACE" in expected:
        hint = " (expected an assignment or '}')"
    return f"unexpected {shorten(str(token.value))!r}{hint}"


def _span(path: str, item: Token | Tree, text: str | None = None) -> SourceSpan:
    if isinstance(item, Token):
        return SourceSpan(path=path, line=item.line or 1, column=item.column or 1, text=text or str(item))
    meta = item.meta
    return SourceSpan(path=path, line=meta.line, column=meta.column, text=text or "")


def _scalar(tree: Tree, path: str) -> Scalar:
    token = tree.children[0]
    raw = str(token)
    if tree.data == "number":
        if len(raw) > limits.MAX_NUMBER_CHARS:
            where = _span(path, token, excerpt(raw))
            raise SpecError(f"number literal of {len(raw)} characters; the limit is {limits.MAX_NUMBER_CHARS}", where)
        if any(c in raw for c in ".eE"):
            return float(raw)
        return int(raw)
    if tree.data == "string":
        return raw[1:-1]
    return {"true": True, "false": False, "none": None}.get(raw, raw)


def _value(tree: Tree, path: str) -> Scalar | list[Scalar] | dict[str, Scalar]:
    if tree.data == "range":
        start, end = (_scalar(child, path) for child in tree.children)
        return {"start": start, "end": end}
    if tree.data == "list":
        return [_scalar(child, path) for child in tree.children if child is not None]
    return _scalar(tree, path)


def _comments(text: str) -> dict[int, str]:
    """Comments by line: a '#' outside a quoted string runs to the end of its line."""
    found = {}
    for number, line in enumerate(text.splitlines(), start=1):
        quoted = False
        for index, char in enumerate(line):
            if char == '"':
                quoted = not quoted
            elif char == "#" and not quoted:
                found[number] = line[index:].rstrip()
                break
    return found


def parse_text(text: str, path: str) -> RawSpec:
    """Parse one spec file's text. Raises `SpecError` located at the first syntax error."""
    try:
        tree = _grammar("spec.lark").parse(text)
    except UnexpectedInput as exc:
        line, column = exc.line if exc.line > 0 else 1, exc.column if exc.column > 0 else 1
        span = SourceSpan(path=path, line=line, column=column, text=_line_of(text, line, column))
        raise SpecError(_describe(exc, text), span) from None
    raw = RawSpec(path=path, comments=_comments(text))
    source_lines = text.splitlines()

    def assignment_span(node: Tree) -> SourceSpan:
        return _span(path, node, excerpt(source_lines[node.meta.line - 1], node.meta.column - 1))

    def read_assignments(nodes: list[Tree], into: dict[str, RawValue], where: str) -> None:
        for node in nodes:
            key_token, value_tree = node.children
            key = str(key_token)
            if key in into:
                raise SpecError(f"duplicate key '{key}' in {where}", assignment_span(node))
            into[key] = RawValue(_value(value_tree, path), assignment_span(node))

    for node in tree.children:
        if node.data == "assignment":
            read_assignments([node], raw.top, "the top level")
        elif node.data == "section":
            name_token, *assignments = node.children
            name = str(name_token)
            span = _span(path, name_token, f"{name} {{")
            if name in raw.sections:
                raise SpecError(f"duplicate section '{name}'", span)
            raw.sections[name] = {}
            raw.section_spans[name] = span
            raw.end_lines[name] = node.meta.end_line
            read_assignments(assignments, raw.sections[name], f"section '{name}'")
        else:  # stages
            keyword, *blocks = node.children
            span = _span(path, keyword, "stages {")
            if raw.stages is not None:
                raise SpecError("duplicate section 'stages'", span)
            raw.stages_span = span
            raw.end_lines["stages"] = node.meta.end_line
            raw.stages = []
            for item in blocks:
                tokens = item.children if isinstance(item, Tree) else [item]
                raw.stages += [StageLine(str(tok), _span(path, tok), index > 0) for index, tok in enumerate(tokens)]
    return raw
