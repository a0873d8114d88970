"""Files -> `SpecDocument`: reading, `extends` chains, merging and validation.

Security model: a spec is data. Nothing is evaluated; `extends` may only name
files under an allowed root (the shipped library, the directory of the spec the
user named, a project root marked by a ``specdsl.toml`` at or above it, or a root
the caller passes: ``--root DIR``), cycles are caught, and files and chains are
size-limited.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import stat
from collections.abc import Iterator, Sequence
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


def _reason(error: OSError | ValueError | RuntimeError) -> str:
    """Why the OS refused a path, in words (no exception class names)."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if "null" in str(error):
        return "the path contains a NUL byte"
    if isinstance(error, RuntimeError) and "loop" in str(error).lower():
        return "symlink loop"
    return str(error)


@contextlib.contextmanager
def path_problems(shown: str, what: str = "cannot read spec", span: SourceSpan | None = None) -> Iterator[None]:
    """Every path the front end resolves or reads goes through this: whatever the OS or `pathlib` refuses (a missing
    or unreadable file, a NUL byte, a symlink loop, a name too long) is one located diagnostic, not a traceback."""
    try:
        yield
    except (OSError, ValueError, RuntimeError) as error:
        raise SpecError(f"{what}: {_reason(error)}", span, path=shown) from None


def find_spec(argument: str | Path) -> Path:
    """A spec path as given, else a shipped spec's name (`b0`, `specdsl:b0`), as timm users name models."""
    path = Path(argument)
    with path_problems(str(argument)):
        exists = os.path.lexists(path)  # a dangling link or a loop is a path (reading it says what is wrong)
    if exists or not isinstance(argument, str):
        return path
    name = argument.removeprefix(LIBRARY_PREFIX).removesuffix(".spec")
    shipped = library_specs()
    if "/" not in name and name in shipped:
        return shipped[name]
    if "/" not in name and os.sep not in name:
        raise SpecError(f"no such file, and no shipped spec '{shorten(name)}'", path=argument, hint=library_hint(name))
    return path  # reading it reports the missing file


def library_hint(name: str) -> str:
    """At most a few shipped names close to ``name``: a spec's file name (`b0`), or the spec whose own ``name`` it is
    (`efficientnet-b0` suggests `b0`)."""
    by_name = {}
    for stem, path in library_specs().items():
        found = re.search(r'^name\s*=\s*"([^"\n]*)"', path.read_text(encoding="utf-8"), re.MULTILINE)
        if found:
            by_name.setdefault(found.group(1), stem)
    exact = by_name.get(name)
    if exact:
        return f"the shipped spec named '{shorten(name)}' is {exact}: `specdsl info {exact}`"
    close = difflib.get_close_matches(name, list(library_specs()), n=4, cutoff=0.5)
    close += [
        by_name[n] for n in difflib.get_close_matches(name, list(by_name), n=4, cutoff=0.75) if by_name[n] not in close
    ]
    if close:
        return f"close matches: {', '.join(close[:4])} (`specdsl list` shows the library)"
    return "`specdsl list` shows the shipped specs, usable by name"


PROJECT_FILE = "specdsl.toml"


def project_root(start: Path) -> Path | None:
    """The extends root declared by the nearest ``specdsl.toml`` at or above ``start``: its directory, or the
    directory its ``[project] root`` names (which must lie inside it). None when there is no such file."""
    with path_problems(str(start), "cannot resolve directory"):
        start = start.resolve()
        marker = next((d / PROJECT_FILE for d in (start, *start.parents) if (d / PROJECT_FILE).is_file()), None)
    if marker is None:
        return None
    import tomllib

    with path_problems(str(marker), "cannot read project file"):
        content = marker.read_bytes()
    try:
        data = tomllib.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"project file is not valid UTF-8 (byte {exc.start})", path=str(marker)) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", path=str(marker)) from None
    project = data.get("project", {})
    unknown = sorted(set(project) - {"root"}) if isinstance(project, dict) else ["[project] is not a table"]
    root = project.get("root", ".") if isinstance(project, dict) else None
    if unknown or not isinstance(root, str):
        problem = f"unknown key(s) {', '.join(unknown)}" if unknown else "root must be a string"
        raise SpecError(f'[project]: {problem}; the one setting is root = "DIR"', path=str(marker))
    with path_problems(str(marker), f"[project] root = {shorten(root)!r}"):
        resolved = (marker.parent / root).resolve()
        inside = resolved.is_relative_to(marker.parent) and resolved.is_dir()
    if not inside:
        raise SpecError(f"[project] root = {root!r} is not a directory inside {marker.parent}", path=str(marker))
    return resolved


def _roots(base: Path, roots: Sequence[Path]) -> list[Path]:
    """Where ``extends`` may reach: the spec's directory, the library, a specdsl.toml's root, and ``roots``."""
    project = project_root(base)
    return [base, library_root(), *([project] if project else []), *roots]


def read_spec_text(path: Path, shown: str, span: SourceSpan | None = None) -> str:
    """A spec file's text (`read_text_file` at `limits.MAX_SPEC_BYTES`)."""
    return read_text_file(path, shown, limit=limits.MAX_SPEC_BYTES, kind="spec", span=span)


def read_text_file(path: Path, shown: str, *, limit: int, kind: str, span: SourceSpan | None = None) -> str:
    """A text file the user names: a regular file (not a directory, FIFO or device), at most ``limit`` bytes (read
    bounded, so a file that grows meanwhile cannot exhaust memory), UTF-8; errors name it as a ``kind`` file."""
    with path_problems(shown, f"cannot read {kind}", span=span):
        if not stat.S_ISREG(path.stat().st_mode):  # stat says why a path cannot be read (missing, a loop, ...)
            raise SpecError("not a regular file", span, path=shown)
        with path.open("rb") as file:
            data = file.read(limit + 1)
    if len(data) > limit:
        raise SpecError(f"{kind} file exceeds the limit of {limit} bytes", span, path=shown)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{kind} is not valid UTF-8 (byte {exc.start})", span, path=shown) from None


def _check_text(text: str, shown: str) -> None:
    if len(text.encode("utf-8", "surrogatepass")) > limits.MAX_SPEC_BYTES:
        raise SpecError(f"spec text exceeds {limits.MAX_SPEC_BYTES} bytes", path=shown)


class _Chain:
    """Loads a file and the files it extends, base first."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = []
        for root in roots:
            with path_problems(str(root), "cannot resolve root"):
                self.roots.append(root.resolve())
        self.roots = list(dict.fromkeys(self.roots))

    def resolve_extends(self, raw: RawSpec, value: RawValue, base_dir: Path) -> Path:
        if not isinstance(value.value, str):
            raise SpecError("extends takes a quoted path", value.span)
        if value.value.startswith(LIBRARY_PREFIX):
            name = value.value.removeprefix(LIBRARY_PREFIX).removesuffix(".spec")
            shipped = library_specs()
            if name not in shipped:
                raise SpecError(f"extends: no shipped spec '{shorten(name)}'", value.span, hint=library_hint(name))
            return shipped[name]
        with path_problems(str(value.span), f"extends {shorten(value.value)!r}", value.span):
            target = (base_dir / value.value).resolve()
            exists = target.exists()  # reading it says what else is wrong (a directory, a FIFO)
        if not any(target.is_relative_to(root) for root in self.roots):
            allowed = ", ".join(str(root) for root in self.roots)
            raise SpecError(
                f"extends path escapes the allowed roots ({allowed})",
                value.span,
                hint=f"allow a project's spec root with --root DIR, or mark it with a {PROJECT_FILE} file",
            )
        if not exists:
            stem = Path(value.value).name.removesuffix(".spec")
            hint = (
                f'the shipped spec is written extends = "{LIBRARY_PREFIX}{stem}"' if stem in library_specs() else None
            )
            raise SpecError(f"extends: no such spec file '{shorten(value.value)}'", value.span, hint=hint)
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
        parent = parse_text(read_spec_text(target, str(target), extends.span), str(target))
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
    with path_problems(shown):
        resolved = file.resolve()
    chain = _Chain(_roots(resolved.parent, roots)).load(raw, resolved.parent, (resolved,))
    return document_from_chain(chain)


def loads_document(
    text: str, name: str = "<string>", *, base_dir: Path | None = None, roots: Sequence[Path] = ()
) -> SpecDocument:
    """Load spec text; `extends` resolves against `base_dir` (default: the working directory)."""
    _check_text(text, name)
    raw = parse_text(text, name)
    with path_problems(str(base_dir or "."), "cannot resolve the directory extends is relative to"):
        base = (base_dir or Path.cwd()).resolve()
    chain = _Chain(_roots(base, roots)).load(raw, base, ())
    return document_from_chain(chain)
