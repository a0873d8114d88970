"""Files -> `SpecDocument`: reading, `extends` chains, merging and validation.

Security model: a spec is data. Nothing is evaluated; `extends` may only name
files under an allowed root (the shipped library, the directory of the spec the
user named, a project root marked by a ``specdsl.toml`` at or above it, or a root
the caller passes: ``--root DIR``), cycles are caught, and files and chains are
size-limited.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from specdsl import limits
from specdsl.errors import SourceSpan, SpecError, shorten
from specdsl.frontend.dialects import decode_block
from specdsl.frontend.syntax import RawSpec, RawValue, parse_text
from specdsl.spec import SECTIONS, TOP_LEVEL_KEYS, SpecDocument, nearest_span
from specdsl.vocabulary import Dialect


def library_root() -> Path:
    """Directory of the shipped spec library (`specs/` in a checkout)."""
    return Path(str(resources.files("specdsl.specs"))).resolve()


LIBRARY_PREFIX = "specdsl:"


def library_specs() -> dict[str, Path]:
    """Shipped specs by name (`b0`, `v2_l`, ...)."""
    return {path.stem: path for path in sorted(library_root().glob("*.spec"))}


def library_families() -> dict[str, list[str]]:
    """Shipped spec names by family, in listing order (`specs/families.toml`)."""
    import tomllib

    return tomllib.loads((library_root() / "families.toml").read_text(encoding="utf-8"))


def find_spec(argument: str | Path) -> Path:
    """A spec path as given, else a shipped spec's name (`b0`, `specdsl:b0`), as timm users name models."""
    path = Path(argument)
    if path.exists() or not isinstance(argument, str):
        return path
    name = argument.removeprefix(LIBRARY_PREFIX).removesuffix(".spec")
    shipped = library_specs()
    if "/" not in name and name in shipped:
        return shipped[name]
    if "/" not in name and os.sep not in name:
        raise SpecError(f"no such file, and no shipped spec '{shorten(name)}'", path=argument, hint=library_hint(name))
    return path  # reading it reports the missing file


def library_hint(name: str) -> str:
    """The shipped names closest to ``name``, or all of them."""
    shipped = list(library_specs())
    close = difflib.get_close_matches(name, shipped, n=8, cutoff=0.5)
    if close:
        return f"close matches: {', '.join(close)} (`specdsl list` shows the library)"
    return f"shipped specs: {', '.join(shipped)}"


PROJECT_FILE = "specdsl.toml"


def project_root(start: Path) -> Path | None:
    """The extends root declared by the nearest ``specdsl.toml`` at or above ``start``: its directory, or the
    directory its ``[project] root`` names (which must lie inside it). None when there is no such file."""
    start = start.resolve()
    marker = next((d / PROJECT_FILE for d in (start, *start.parents) if (d / PROJECT_FILE).is_file()), None)
    if marker is None:
        return None
    import tomllib

    try:
        data = tomllib.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read project file: {exc}", path=str(marker)) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", path=str(marker)) from None
    project = data.get("project", {})
    unknown = sorted(set(project) - {"root"}) if isinstance(project, dict) else ["[project] is not a table"]
    root = project.get("root", ".") if isinstance(project, dict) else None
    if unknown or not isinstance(root, str):
        problem = f"unknown key(s) {', '.join(unknown)}" if unknown else "root must be a string"
        raise SpecError(f'[project]: {problem}; the one setting is root = "DIR"', path=str(marker))
    resolved = (marker.parent / root).resolve()
    if not resolved.is_relative_to(marker.parent) or not resolved.is_dir():
        raise SpecError(f"[project] root = {root!r} is not a directory inside {marker.parent}", path=str(marker))
    return resolved


def _roots(base: Path, roots: Sequence[Path]) -> list[Path]:
    """Where ``extends`` may reach: the spec's directory, the library, a specdsl.toml's root, and ``roots``."""
    project = project_root(base)
    return [base, library_root(), *([project] if project else []), *roots]


def read_spec_text(path: Path, shown: str) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror or exc}", path=shown) from None
    if not path.is_file():
        raise SpecError("not a regular file", path=shown)
    if size > limits.MAX_SPEC_BYTES:
        raise SpecError(f"spec file is {size} bytes; the limit is {limits.MAX_SPEC_BYTES}", path=shown)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec is not valid UTF-8 (byte {exc.start})", path=shown) from None
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror or exc}", path=shown) from None


def _check_text(text: str, shown: str) -> None:
    if len(text.encode("utf-8", "surrogatepass")) > limits.MAX_SPEC_BYTES:
        raise SpecError(f"spec text exceeds {limits.MAX_SPEC_BYTES} bytes", path=shown)


class _Chain:
    """Loads a file and the files it extends, base first."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = list(dict.fromkeys(root.resolve() for root in roots))

    def resolve_extends(self, raw: RawSpec, value: RawValue, base_dir: Path) -> Path:
        if not isinstance(value.value, str):
            raise SpecError("extends takes a quoted path", value.span)
        if value.value.startswith(LIBRARY_PREFIX):
            name = value.value.removeprefix(LIBRARY_PREFIX).removesuffix(".spec")
            shipped = library_specs()
            if name not in shipped:
                raise SpecError(f"extends: no shipped spec '{shorten(name)}'", value.span, hint=library_hint(name))
            return shipped[name]
        target = (base_dir / value.value).resolve()
        if not any(target.is_relative_to(root) for root in self.roots):
            allowed = ", ".join(str(root) for root in self.roots)
            raise SpecError(
                f"extends path escapes the allowed roots ({allowed})",
                value.span,
                hint=f"allow a project's spec root with --root DIR, or mark it with a {PROJECT_FILE} file",
            )
        if not target.is_file():
            raise SpecError(f"extends: no such spec file '{shorten(value.value)}'", value.span)
        return target

    def load(self, raw: RawSpec, base_dir: Path, seen: tuple[Path, ...]) -> list[RawSpec]:
        extends = raw.top.get("extends")
        if extends is None:
            return [raw]
        if len(seen) >= limits.MAX_EXTENDS_DEPTH:
            raise SpecError(f"extends chain deeper than {limits.MAX_EXTENDS_DEPTH}", extends.span)
        target = self.resolve_extends(raw, extends, base_dir)
        if target in seen:
            cycle = " -> ".join(p.name for p in (*seen, target))
            raise SpecError(f"extends cycle: {cycle}", extends.span)
        parent = parse_text(read_spec_text(target, str(target)), str(target))
        return [*self.load(parent, target.parent, (*seen, target)), raw]


def _merge(chain: list[RawSpec]) -> tuple[dict[str, Any], dict[str, SourceSpan], RawSpec]:
    """Later files override earlier ones key by key; a `stages` section replaces the whole list."""
    data: dict[str, Any] = {}
    spans: dict[str, SourceSpan] = {}
    stages_from = chain[0]
    for raw in chain:
        spans.setdefault("", SourceSpan(path=raw.path, line=1, column=1))
        for key, value in raw.top.items():
            if key not in TOP_LEVEL_KEYS:
                raise SpecError(
                    f"unknown top-level key '{shorten(key)}' (expected one of: {', '.join(TOP_LEVEL_KEYS)})", value.span
                )
            if key != "extends":
                data[key] = value.value
                spans[key] = value.span
        for section, entries in raw.sections.items():
            if section not in SECTIONS:
                raise SpecError(
                    f"unknown section '{shorten(section)}' (expected one of: stages, {', '.join(SECTIONS)})",
                    raw.section_spans[section],
                )
            spans[section] = raw.section_spans[section]
            target = data.setdefault(section, {})
            for key, value in entries.items():
                target[key] = value.value
                spans[f"{section}.{key}"] = value.span
        if raw.stages is not None:
            stages_from = raw
    # Keys missing everywhere are reported at the named file's first statement.
    first = min((value.span for value in chain[-1].top.values()), key=lambda s: s.line, default=None)
    spans[""] = first or SourceSpan(path=chain[-1].path, line=1, column=1)
    return data, spans, stages_from


def _validation_error(exc: ValidationError, spans: dict[str, SourceSpan]) -> SpecError:
    # An unknown key is usually a typo of a missing one: report it first.
    error = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    span = nearest_span(spans, key)
    if error["type"] == "extra_forbidden":
        message = f"unknown key '{shorten(loc[-1])}'" + (f" in section '{loc[0]}'" if len(loc) > 1 else "")
        section_model = SECTIONS.get(loc[0])
        hint = None
        if section_model is not None:
            close = difflib.get_close_matches(loc[-1], list(section_model.model_fields), n=1)
            hint = (
                f"did you mean '{close[0]}'?" if close else f"{loc[0]} takes: {', '.join(section_model.model_fields)}"
            )
        return SpecError(message, span, hint=hint)
    if error["type"] == "missing":
        return SpecError(f"missing required key '{key}'", span)
    return SpecError(f"{key}: {error['msg'].removeprefix('Value error, ')}", span)


def document_from_chain(chain: list[RawSpec]) -> SpecDocument:
    data, spans, stages_from = _merge(chain)
    dialect_text = data.get("dialect")
    if dialect_text is None:
        raise SpecError(
            "missing required key 'dialect' (automl, tpu or timm): block strings mean different things in each",
            spans.get(""),
        )
    try:
        dialect = Dialect(dialect_text)
    except ValueError:
        raise SpecError(
            f"unknown dialect {shorten(str(dialect_text))!r}; expected one of: {', '.join(d.value for d in Dialect)}",
            spans["dialect"],
        ) from None
    if stages_from.stages is None:
        raise SpecError("missing 'stages' section", spans.get(""))
    if stages_from.stages_span is not None:
        spans["stages"] = stages_from.stages_span
    if len(stages_from.stages) > limits.MAX_STAGES:
        raise SpecError(f"{len(stages_from.stages)} stages; the limit is {limits.MAX_STAGES}", spans["stages"])
    stages = []
    for index, (text, span, continues) in enumerate(stages_from.stages):
        spans[f"stages.{index}"] = span
        line = decode_block(text, span, dialect)
        stages.append(line.model_copy(update={"continues": True}) if continues else line)
    data["stages"] = stages
    try:
        return SpecDocument.model_validate({**data, "spans": spans})
    except ValidationError as exc:
        raise _validation_error(exc, spans) from None


def load_document(path: str | Path, *, roots: Sequence[Path] = ()) -> SpecDocument:
    """Load a spec file (or a shipped spec by name). `extends` may reach the file's own directory, the
    library, the root a ``specdsl.toml`` at or above the file declares, and `roots`."""
    file = find_spec(path)
    shown = str(path) if file == Path(path) else str(file)
    text = read_spec_text(file, shown)
    raw = parse_text(text, shown)
    base = file.resolve().parent
    chain = _Chain(_roots(base, roots)).load(raw, base, (file.resolve(),))
    return document_from_chain(chain)


def loads_document(
    text: str, name: str = "<string>", *, base_dir: Path | None = None, roots: Sequence[Path] = ()
) -> SpecDocument:
    """Load spec text; `extends` resolves against `base_dir` (default: the working directory)."""
    _check_text(text, name)
    raw = parse_text(text, name)
    base = (base_dir or Path.cwd()).resolve()
    chain = _Chain(_roots(base, roots)).load(raw, base, ())
    return document_from_chain(chain)
