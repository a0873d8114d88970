"""One name for everything a build writes: every backend's files and the default output folder come from
`specdsl.backends.naming.file_stem`."""

from __future__ import annotations

import importlib.util
import keyword
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specdsl.backends.naming import file_stem
from tests.conftest import TINY_SPEC, run_cli

NAME = "My-Net v2.1/b0"  # hyphen, space, dot, slash, capitals: every convention would spell it differently
STEM = "my_net_v2_1_b0"

#: backend -> the suffixes of what `build` writes (the stem comes from file_stem).
WRITES = {
    "torch": (".py", ".safetensors"),
    "onnx": (".onnx",),
    "keras": (".keras",),
}


@pytest.mark.parametrize("backend", sorted(WRITES))
def test_backend_files_and_default_folder_use_file_stem(backend: str, tmp_path: Path) -> None:
    if importlib.util.find_spec({"torch": "torch", "onnx": "onnx_ir", "keras": "keras"}[backend]) is None:
        pytest.skip(f"needs specdsl[{backend}]")
    spec = tmp_path / "net.spec"
    spec.write_text(TINY_SPEC.replace('name = "tiny"', f'name = "{NAME}"'))
    assert file_stem(NAME) == STEM

    result = run_cli("build", str(spec), "--backend", backend, cwd=tmp_path)  # no -o: the default folder
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "build" / STEM
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == [STEM]
    assert sorted(p.name for p in folder.iterdir()) == sorted(STEM + suffix for suffix in WRITES[backend])
    for suffix in WRITES[backend]:
        assert f"wrote {Path('build', STEM, STEM + suffix)}" in result.stdout


@given(st.text(max_size=40))
def test_file_stem_is_one_importable_module_name(name: str) -> None:
    stem = file_stem(name)
    assert stem.isidentifier() and stem.isascii() and not keyword.iskeyword(stem)
    assert stem == stem.lower() and Path(stem).name == stem and stem not in (".", "..")
    assert file_stem(stem) == stem  # a stem names itself
