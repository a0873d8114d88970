"""The backends' contract (`specdsl.backends.BACKENDS`, `OPTIONS`): the table agrees with the backends' code, the
CLI's build flags come from it, and an option a backend lacks is refused one way from the CLI and from Python."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import specdsl
from specdsl.backends import BACKENDS, OPTIONS, UnsupportedOption, option_flag, refusing
from specdsl.errors import SpecError
from tests.conftest import ROOT, TINY_SPEC, one_error_line, run_cli, run_main

BACKENDS_DIR = ROOT / "backends"


def _function(path: Path, name: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name)


def _keywords(backend: str) -> set[str]:
    """The keyword arguments ``emit`` takes, read from the source (no framework imported): an ``emit`` with
    ``**options`` passes them to ``build``, whose keywords count then."""
    accepted: set[str] = set()
    for path, name in ((BACKENDS_DIR / backend / "emit.py", "emit"), (BACKENDS_DIR / backend / "model.py", "build")):
        arguments = _function(path, name).args
        accepted |= {argument.arg for argument in arguments.kwonlyargs}
        if arguments.kwarg is None:
            break
    return accepted


def _constant(path: Path, name: str) -> object:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    value = next(node.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == name)  # type: ignore[attr-defined]
    return eval(ast.unparse(value), {"range": range})  # a literal or a range, in our own source


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_each_backend_takes_exactly_the_options_its_entry_lists(backend: str) -> None:
    keywords = {name for entry in BACKENDS.values() for name in entry.options}  # options that reach a backend
    assert set(BACKENDS[backend].options) <= set(OPTIONS)
    assert keywords & _keywords(backend) == set(BACKENDS[backend].options)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_emit_names_the_files_the_entry_lists(backend: str) -> None:
    """Each file ``emit`` writes is ``<stem><suffix>`` in its source (the pre-flight plans from the table; the
    build tests compare it with the files written)."""
    source = (BACKENDS_DIR / backend / "emit.py").read_text(encoding="utf-8")
    entry = BACKENDS[backend]
    for suffix in (*entry.outputs, *(export.suffix for export in entry.exports.values())):
        assert f'}}{suffix.split("/")[0]}"' in source, suffix


def test_option_choices_are_the_backends_own() -> None:
    onnx, keras = BACKENDS_DIR / "onnx", BACKENDS_DIR / "keras"
    assert OPTIONS["opset"].choices == tuple(_constant(onnx / "model.py", "OPSETS"))  # type: ignore[arg-type]
    assert OPTIONS["dtype"].choices == _constant(onnx / "model.py", "DTYPES")
    assert OPTIONS["calibration_method"].choices == _constant(onnx / "quantize.py", "METHODS")
    quantize = {*_constant(onnx / "quantize.py", "QUANTIZE"), *_constant(keras / "tflite.py", "QUANTIZE")}  # type: ignore[misc]
    assert set(OPTIONS["quantize"].choices or ()) == quantize


def test_importing_the_contract_imports_no_framework() -> None:
    code = "import sys, specdsl.backends; print([m for m in ('torch', 'keras', 'onnx', 'numpy') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_build_help_lists_every_option_once_in_its_section() -> None:
    result = run_cli("build", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    lines = text.splitlines()
    for option in OPTIONS.values():
        described = [i for i, line in enumerate(lines) if line.strip().startswith(option_flag(option.name) + " ")]
        described += [i for i, line in enumerate(lines) if line.strip() == option_flag(option.name)]
        assert len(described) == 1, option.name
        section = next(line for line in reversed(lines[: described[0]]) if line and not line.startswith(" "))
        assert section == f"{option.group or 'options'}:", option.name
    words = " ".join(text.split())
    assert "torch, keras or onnx" in words
    assert all(
        f"{name} ({backend}: {export.help})" in words
        for backend, entry in BACKENDS.items()
        for name, export in entry.exports.items()
    )


def test_an_option_a_backend_lacks_is_refused_one_way_from_the_cli_and_from_python(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    spec = tmp_path / "tiny.spec"
    spec.write_text(TINY_SPEC)
    code, _, stderr = run_main("build", str(spec), "--backend", "onnx", "--deploy", "--export", "pt2")
    assert code == 2 and one_error_line(stderr) == "error: the onnx backend has no option --deploy, --export"
    ir = specdsl.load(spec)
    with pytest.raises(UnsupportedOption, match=r"the onnx backend's build\(\) has no option deploy$") as refused:
        specdsl.build(ir, "onnx", deploy=True)
    assert isinstance(refused.value, SpecError) and isinstance(refused.value, TypeError)
    with pytest.raises(UnsupportedOption, match=r"the onnx backend's emit\(\) has no option export$"):
        specdsl.backends.load_backend("onnx").emit(ir, tmp_path, export="pt2")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tiny.spec"]


def test_the_contract_outranks_a_signature() -> None:
    """A keyword the function has but the backend's entry lacks is refused too (Keras's ``build`` had ``deploy``)."""

    def build(ir: object, *, deploy: bool = False, keep_bn: bool = False, memory_efficient: bool = False) -> str:
        return "built"

    checked = refusing("onnx", build)
    assert checked(None, keep_bn=True, memory_efficient=True) == "built"  # listed, or no build option at all
    for wrong in ({"deploy": True}, {"deploy": False}, {"bogus": 1}):
        with pytest.raises(UnsupportedOption, match=f"has no option {next(iter(wrong))}$"):
            checked(None, **wrong)
