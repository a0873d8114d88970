"""The language reference lists every key and every limit the parser enforces."""

from __future__ import annotations

from specdsl import limits
from specdsl.spec import SECTIONS
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "language.md").read_text()


def test_every_key_is_documented() -> None:
    for section, model in SECTIONS.items():
        assert f"### `{section} {{ … }}`" in DOC
        table = DOC.split(f"### `{section} {{ … }}`", 1)[1].split("###", 1)[0]
        for key, field in model.model_fields.items():
            assert f"| `{key}` |" in table, f"{section}.{key} missing from docs/language.md"
            assert (field.description or "").replace("|", "\\|") in table


def test_every_limit_is_documented() -> None:
    for what, value in limits.ALL.items():
        assert f"| {what.replace('|', chr(92) + '|')} | {value:,} |" in DOC, what
