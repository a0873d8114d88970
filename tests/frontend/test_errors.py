"""Bad input: `path:line:col: error: ...`, the offending text, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

import specdsl
from tests.conftest import SPECS, TINY_SPEC, run_cli

VALID = TINY_SPEC


def write(tmp_path: Path, text: str, name: str = "bad.spec") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


CASES = {
    "typo in a key": (VALID.replace("resolution", "resolutoin"), 3, "unknown key 'resolutoin'"),
    "typo in a block string": (VALID.replace("r2_k3", "r2_kk3"), 7, "unknown option 'kk'"),
    "channel mismatch": (VALID.replace("i16_o24", "i20_o24"), 7, "channel mismatch"),
    "dialect mix": (VALID.replace("r2_k3_s2_e4", "ir_r2_k3_s2_e4"), 7, "unknown option 'ir'"),
    "billion repeats": (VALID.replace("r2_k3", "r1000000000_k3"), 7, "exceeds the limit"),
    "syntax": (VALID.replace("stem {", "stem"), 4, "unexpected"),
    "unknown section": (VALID + "optimizer { lr = 1 }\n", 9, "unknown section 'optimizer'"),
    "unknown dialect": (VALID.replace("automl", "keras"), 2, "unknown dialect"),
    "missing dialect": (VALID.replace("dialect = automl\n", ""), 1, "missing required key 'dialect'"),
    "bad value": (VALID.replace("input { resolution = 64 }", "input { resolution = 64 channels = 0 }"), 3, "channels"),
    "wrong type": (VALID.replace("stem { channels = 16 }", "stem { channels = 16 activation = swish }"), 4,
                   "activation"),
    "resolution vs stride": (VALID.replace("resolution = 64", "resolution = 2"), 3, "resolution"),
    "too small for stride": (VALID.replace("resolution = 64", "resolution = 8").replace(
        "r1_k3_s1_e1_i16_o16_c1", "r1_k3_s2_e1_i16_o16_c1\n    r1_k3_s2_e1_i16_o16_c1"), 3, "total stride"),
    "duplicate key": (VALID.replace("stem { channels = 16 }", "stem { channels = 16 channels = 8 }"), 4, "duplicate"),
    "depth bomb": (VALID.replace("r2_k3", "r20_k3") + "scaling { depth = 60 }\n", 7, "after depth scaling"),
    "width bomb": (VALID.replace("o24", "o1024") + "scaling { width = 60 }\n", 7, "limit"),
    "growth under compound": (VALID + "scaling {\n    stage_growth = [1.0, 1.1]\n}\n", 10, "rule = compound"),
    "v2 without growth": (VALID + "scaling { rule = v2 }\n", 9, "rule = v2 needs stage_growth"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_reports_located_error(case: str, tmp_path: Path) -> None:
    text, line, message = CASES[case]
    path = write(tmp_path, text)
    result = run_cli("check", str(path))
    assert result.returncode == 2, result.stdout
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:{line}:"), first
    assert ": error: " in first
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    offending = result.stderr.splitlines()[1].strip()
    assert offending and offending in text  # the offending source text is shown


def test_python_api_error_carries_location(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("i16_o24", "i20_o24"))
    with pytest.raises(specdsl.SpecError) as caught:
        specdsl.load(path)
    assert (caught.value.path, caught.value.line, caught.value.column) == (str(path), 7, 5)


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path, 'extends = "b.spec"\nname = "a"\n', "a.spec")
    write(tmp_path, 'extends = "a.spec"\n', "b.spec")
    result = run_cli("check", str(tmp_path / "a.spec"))
    assert result.returncode == 2
    assert "extends cycle" in result.stderr and ":1:1: error:" in result.stderr


@pytest.mark.parametrize("target", ["../outside.spec", "/etc/hostname", "../../../../etc/passwd"])
def test_extends_cannot_escape_the_root(tmp_path: Path, target: str) -> None:
    (tmp_path / "outside.spec").write_text(VALID)
    inner = tmp_path / "inner"
    inner.mkdir()
    path = write(inner, f'extends = "{target}"\n')
    result = run_cli("check", str(path))
    assert result.returncode == 2
    assert f"{path}:1:1: error: extends path escapes" in result.stderr


def test_extends_a_library_spec_from_the_library(tmp_path: Path) -> None:
    ir = specdsl.load(SPECS / "b3.spec")  # b3 extends b0 inside the library
    assert ir.name == "efficientnet-b3"


def test_limit_breaking_spec_is_rejected_fast_without_allocating(tmp_path: Path) -> None:
    bombs = [
        VALID.replace("r2_k3", "r1000000000_k3"),
        VALID.replace("o24", "o1000000000"),
        VALID.replace("resolution = 64", "resolution = 1000000000"),
        VALID + "scaling { depth = 1e9 }\n",
        VALID + "scaling { width = 63 depth = 63 }\n",
        VALID + "head { classes = 1000000000 }\n",
    ]
    specdsl.loads(VALID)  # warm imports and grammar caches
    for text in bombs:
        tracemalloc.start()
        start = time.perf_counter()
        with pytest.raises(specdsl.SpecError):
            specdsl.loads(text, "bomb.spec")
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < 1.0
        assert peak < 8 * 1024 * 1024, peak  # nothing proportional to the requested size


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "#" * (1 << 20))
    result = run_cli("check", str(path))
    assert result.returncode == 2
    assert "limit" in result.stderr


def test_missing_file() -> None:
    result = run_cli("check", "no/such.spec")
    assert result.returncode == 2
    assert result.stderr.startswith("no/such.spec: error:")


def test_spec_values_are_never_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = VALID.replace('"tiny"', f"\"__import__('os').system('touch {marker}')\"")
    specdsl.loads(payload)
    assert not marker.exists()


def test_failed_scale_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.spec"
    result = run_cli("scale", str(SPECS / "b0.spec"), "--phi", "30", "-o", str(out))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_build_with_an_unknown_backend_names_the_backends(tmp_path: Path) -> None:
    result = run_cli("build", str(SPECS / "b0.spec"), "--backend", "jax", "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown backend 'jax'; choose one of: keras, onnx, torch" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from specdsl.backends import BackendUnavailable, load_backend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(BackendUnavailable, match=r"pip install 'specdsl\[torch\]'"):
        load_backend("torch")


# --- issue #6: diagnostics for what a user can type ---------------------------------------------------------


def test_a_long_offending_line_is_cut_around_the_column(tmp_path: Path) -> None:
    filler = "x = 1 " * 70_000  # a 420 KB line
    path = write(tmp_path, VALID.replace("resolution = 64", f"resolution = 64 {filler}?"))
    result = run_cli("check", str(path))
    assert result.returncode == 2
    first, shown, *_ = result.stderr.splitlines()
    column = len("input { resolution = 64 ") + len(filler) + 1
    assert first == f"{path}:3:{column}: error: unexpected character '?'"
    assert shown.startswith("    …") and shown.endswith("? }")
    assert len(shown) < 110
    assert len(result.stderr) < 400


def test_a_long_block_string_is_cut_too(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("r2_k3_s2", "r2_" + "k3_" * 20_000 + "s2"))
    result = run_cli("check", str(path))
    assert result.returncode == 2
    assert "given twice" in result.stderr
    assert all(len(line) < 200 for line in result.stderr.splitlines())


@pytest.mark.parametrize("digits", [65, 4301, 100_000])
def test_an_over_long_number_is_a_located_error(tmp_path: Path, digits: int) -> None:
    path = write(tmp_path, VALID.replace("resolution = 64", f"resolution = {'1' * digits}"))
    result = run_cli("check", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}:3:22: error: number literal of {digits} characters; the limit is 64")
    assert "Traceback" not in result.stderr and len(result.stderr) < 400


@pytest.mark.parametrize("name", ["ti\x00ny", "tab\there", "bell\x07"])
def test_names_in_a_spec_are_validated(tmp_path: Path, name: str) -> None:
    """The name becomes a docstring, a class and file name, and a line of the specs `scale` writes."""
    bad = write(tmp_path, VALID.replace('"tiny"', f'"{name}"'))
    result = run_cli("check", str(bad))
    assert result.returncode == 2
    first, shown = result.stderr.splitlines()[:2]
    assert first.startswith(f"{bad}:1:1: error: name: must be printable text without quotes or backslashes")
    assert shown.isprintable()  # the control character is shown escaped, not sent to the terminal


@pytest.mark.parametrize("name", ['say "hi"', "back\\slash", "ctrl\x01"])
def test_names_given_as_flags_are_validated(name: str) -> None:
    result = run_cli("scale", "b0", "--phi", "1", "--name", name)
    assert result.returncode == 2
    assert "error: name: must be printable text without quotes or backslashes" in result.stderr
    assert "Traceback" not in result.stderr


def test_flags_are_blamed_as_flags() -> None:
    for args, expected in (
        (["info", "b0", "--resolution", "20"], "--resolution 20: error: resolution 20 is smaller than"),
        (["info", "b0", "--resolution", "100000"], "--resolution 100000: error: must be between 8 and 4096"),
        (["info", "b0", "--batch-size", "0"], "--batch-size 0: error: must be between 1 and"),
        (["scale", "b0", "--resolution", "20"], "--resolution 20: error: resolution 20 is smaller than"),
        (["scale", "b0", "--phi", "40"], "--phi 40: error: phi must be a finite number"),
        (["scale", "b0", "--phi", "1", "--dropout", "3"], "--phi 1 --dropout 3: error: dropout must be a finite"),
    ):
        result = run_cli(*args)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [result.stderr.splitlines()[0]]  # one line: no spec text quoted
        assert result.stderr.startswith(expected), result.stderr


def test_an_unknown_library_name_lists_the_close_matches() -> None:
    result = run_cli("info", "b9")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "b9: error: no such file, and no shipped spec 'b9'",
        "  hint: close matches: b8, b7, b6, b5 (`specdsl list` shows the library)",
    ]
    assert "close matches: v2_s" in run_cli("info", "v2s").stderr


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (VALID.replace("input { resolution = 64 }", "input { resolution = 64"), 4,
         "unexpected '{': section 'input' opened on line 3 has no closing '}'"),
        (VALID.rstrip().removesuffix("}"), 7, "unexpected end of file: section 'stages' opened on line 5 has no "
                                                "closing '}'"),
        (VALID + "}\n", 9, "unexpected '}': no section is open here"),
        (VALID.replace("stem { channels = 16 }", "stem { channels = 16 } }"), 4, "unexpected '}': no section"),
    ],
)  # fmt: skip
def test_a_brace_error_mentions_the_brace(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    result = run_cli("check", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}:{line}:"), result.stderr
    assert f"error: {message}" in result.stderr.splitlines()[0]


def _project(tmp_path: Path) -> Path:
    (tmp_path / "base.spec").write_text(VALID)
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.spec"
    child.write_text('extends = "../base.spec"\nname = "child"\n')
    return child


def test_extends_roots_default_stays_safe_and_says_how_to_widen(tmp_path: Path) -> None:
    child = _project(tmp_path)
    result = run_cli("check", str(child))
    assert result.returncode == 2
    assert f"{child}:1:1: error: extends path escapes the allowed roots" in result.stderr
    assert "hint: allow a project's spec root with --root DIR, or mark it with a specdsl.toml file" in result.stderr


def test_extends_root_flag(tmp_path: Path) -> None:
    child = _project(tmp_path)
    for command in (["check"], ["info"], ["fmt"], ["scale", "--phi", "1", "-o", str(tmp_path / "out.spec")]):
        result = run_cli(*command, "--root", str(tmp_path), str(child))
        assert result.returncode == 0, (command, result.stderr)
    assert specdsl.load(child, roots=[tmp_path]).name == "child"
    missing = run_cli("check", "--root", str(tmp_path / "nowhere"), str(child))
    assert missing.returncode == 2 and f"--root {tmp_path / 'nowhere'}: error: not a directory" in missing.stderr


def test_extends_root_from_a_project_file(tmp_path: Path) -> None:
    child = _project(tmp_path)
    marker = tmp_path / "specdsl.toml"
    marker.write_text("")  # presence marks the project root
    assert specdsl.load(child).name == "child"
    marker.write_text('[project]\nroot = "."\n')
    assert run_cli("check", str(child)).returncode == 0
    marker.write_text('[project]\nroot = "sub"\n')  # narrower: base.spec is outside it again
    assert "escapes the allowed roots" in run_cli("check", str(child)).stderr
    for text, message in (('[project]\nroot = ".."\n', "is not a directory inside"), ("[project\n", "not valid TOML"),
                          ('[project]\nrot = "."\n', "unknown key(s) rot")):  # fmt: skip
        marker.write_text(text)
        result = run_cli("check", str(child))
        assert result.returncode == 2
        assert result.stderr.startswith(f"{marker}: error: ") and message in result.stderr


def test_analyze_at_a_resolution_beyond_the_limits_is_an_error() -> None:
    """The Python API re-resolves at another resolution through the same validation as a spec file."""
    with pytest.raises(specdsl.SpecError, match="resolution must be an integer from 8 to 4096"):
        specdsl.analyze(specdsl.load(SPECS / "b0.spec"), resolution=100_000)
