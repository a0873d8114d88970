"""Specs back to text, in one canonical layout.

`format_raw` is `specdsl fmt`: one file's own keys, reordered canonically,
comments kept with the item they precede or trail. `render_document` is what
`specdsl scale` writes: every key of a merged document spelled out, so the file
stands alone (no extends) and re-parses to the same network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from specdsl.frontend.syntax import RawSpec
from specdsl.spec import SECTIONS, SpecDocument

_WORD = re.compile(r"[a-z_][a-z0-9_]*")
_RESERVED = {"true", "false", "none", "stages"}
_QUOTED_KEYS = {"name", "extends"}
_TOP_ORDER = ("extends", "name", "dialect")
_SECTION_ORDER = ("input", "stem", "stages", "head", "outputs", "defaults", "scaling", "training")
INDENT = "    "


def render_value(value: Any, *, quote: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return f"{render_value(value['start'])} -> {render_value(value['end'])}"
    if isinstance(value, list):
        return "[" + ", ".join(render_value(item) for item in value) + "]"
    text = str(value)
    if quote or not _WORD.fullmatch(text) or text in _RESERVED:
        return f'"{text}"'
    return text


@dataclass
class _Item:
    text: str
    line: int | None = None  # source line, for comments
    leading: list[str] = field(default_factory=list)
    trailing: str | None = None


@dataclass
class _Section:
    name: str
    header: _Item
    body: list[_Item]
    end: _Item


@dataclass
class _Layout:
    top: list[_Item]
    sections: list[_Section]
    head: list[str] = field(default_factory=list)  # comments above the first item: the file's header
    tail: list[str] = field(default_factory=list)  # comments after the last item

    def items(self) -> list[_Item]:
        found = list(self.top)
        for section in self.sections:
            found += [section.header, *section.body, section.end]
        return found

    def attach(self, comments: dict[int, str]) -> None:
        """Give each comment to the item on its line (trailing) or the next item below it (leading)."""
        located = sorted((item for item in self.items() if item.line is not None), key=lambda item: item.line or 0)
        by_line = {item.line: item for item in located}
        first_line = located[0].line if located else None
        for line, text in sorted(comments.items()):
            following = next((item for item in located if (item.line or 0) > line), None)
            if first_line is not None and line < first_line:
                self.head.append(text)
            elif line in by_line:
                by_line[line].trailing = text
            elif following is None:
                self.tail.append(text)
            else:
                following.leading.append(text)

    def render(self) -> str:
        out: list[str] = list(self.head)

        def emit(item: _Item, indent: str) -> None:
            out.extend(indent + comment for comment in item.leading)
            out.append(indent + item.text + (f"  {item.trailing}" if item.trailing else ""))

        for item in self.top:
            emit(item, "")
        for section in self.sections:
            if out:
                out.append("")
            emit(section.header, "")
            for item in section.body:
                emit(item, INDENT)
            out.extend(INDENT + comment for comment in section.end.leading)
            out.append("}" + (f"  {section.end.trailing}" if section.end.trailing else ""))
        if self.tail:
            out.append("")
            out.extend(self.tail)
        return "\n".join(out) + "\n"


def stage_items(lines: list[tuple[str, int | None, bool]]) -> list[_Item]:
    """One item per stage: a line on its own, or the lines of a `[a, b]` group joined on the group's first line."""
    groups: list[tuple[list[str], int | None]] = []
    for text, line, continues in lines:
        if continues and groups:
            groups[-1][0].append(text)
        else:
            groups.append(([text], line))
    return [_Item(texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]", line) for texts, line in groups]


def _assignment(key: str, value: Any, line: int | None = None) -> _Item:
    return _Item(f"{key} = {render_value(value, quote=key in _QUOTED_KEYS)}", line)


def _key_order(section: str, keys: list[str]) -> list[str]:
    model = SECTIONS.get(section)
    known = list(model.model_fields) if model else []
    return [key for key in known if key in keys] + [key for key in keys if key not in known]


def format_raw(raw: RawSpec) -> str:
    """Canonical text of one file as written (its own keys only; comments kept)."""
    top = [_assignment(key, raw.top[key].value, raw.top[key].span.line) for key in _TOP_ORDER if key in raw.top]
    top += [_assignment(key, value.value, value.span.line) for key, value in raw.top.items() if key not in _TOP_ORDER]
    names = [name for name in _SECTION_ORDER if name in raw.sections or (name == "stages" and raw.stages is not None)]
    names += [name for name in raw.sections if name not in _SECTION_ORDER]
    sections = []
    for name in names:
        if name == "stages":
            assert raw.stages is not None and raw.stages_span is not None
            header = _Item("stages {", raw.stages_span.line)
            body = stage_items([(text, span.line, continues) for text, span, continues in raw.stages])
        else:
            entries = raw.sections[name]
            header = _Item(f"{name} {{", raw.section_spans[name].line)
            body = [
                _assignment(key, entries[key].value, entries[key].span.line) for key in _key_order(name, list(entries))
            ]
        sections.append(_Section(name, header, body, _Item("}", raw.end_lines.get(name))))
    layout = _Layout(top, sections)
    layout.attach(raw.comments)
    return layout.render()


def render_document(doc: SpecDocument, header: list[str] | None = None) -> str:
    """A complete, standalone spec for `doc`: every key written, no extends."""
    top = [_assignment("name", doc.name), _assignment("dialect", doc.dialect.value)]
    if header:
        top[0].leading = [f"# {line}" if line else "#" for line in header]
    sections = []
    for name in _SECTION_ORDER:
        if name == "outputs" and doc.outputs == type(doc.outputs)():
            continue  # a classifier: written as before backbone specs existed
        if name == "stages":
            body = stage_items([(stage.text, None, stage.continues) for stage in doc.stages])
        else:
            values = getattr(doc, name).model_dump(mode="json")
            body = [_assignment(key, values[key]) for key in _key_order(name, list(values))]
        sections.append(_Section(name, _Item(f"{name} {{"), body, _Item("}")))
    return _Layout(top, sections).render()
