"""Issue 18, the compile side: every path the front end resolves, the memory a build allocates, the public API's
arguments and a new user's frictions each fail as one located diagnostic, exit 2, nothing touched."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import specdsl
from tests.conftest import SPECS, TINY_SPEC, listing, run_cli, run_main

#: Inside every count limit (3.2e9 params), yet 12.3 GiB of float32 weights: it used to exhaust memory in `build`.
BOMB = """\
name = "bomb"
dialect = tpu
input { resolution = 32 }
stem { channels = 32 }
stages {
    r1_k1_s11_e1_i32_o32768
    r3_k1_s11_e1_i32768_o32768
}
head { channels = 1280 dropout = 0.2 classes = 1000 }
"""


def single_error(stderr: str) -> str:
    """Exactly one `error:` line and no traceback (a located error may quote its spec line and add a hint)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error: " in line]
    assert len(errors) == 1, stderr
    return errors[0]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# --- 1. paths -------------------------------------------------------------------------------------------------------


def _nul_extends(tmp: Path) -> tuple[Path, str]:
    return write(tmp / "a.spec", b'extends = "x\x00y.spec"\n'), "the path contains a NUL byte"


def _nul_project_root(tmp: Path) -> tuple[Path, str]:
    write(tmp / "specdsl.toml", '[project]\nroot = "a\\u0000b"\n')
    return write(tmp / "a.spec", TINY_SPEC), "the path contains a NUL byte"


def _extends_loop(tmp: Path) -> tuple[Path, str]:
    (tmp / "one.spec").symlink_to("two.spec")
    (tmp / "two.spec").symlink_to("one.spec")
    return write(tmp / "a.spec", 'extends = "one.spec"\n'), "symlink loop"


def _spec_loop(tmp: Path) -> tuple[Path, str]:
    (tmp / "one.spec").symlink_to("two.spec")
    (tmp / "two.spec").symlink_to("one.spec")
    return tmp / "one.spec", "symbolic links"


def _directory(tmp: Path) -> tuple[Path, str]:
    (tmp / "dir.spec").mkdir()
    return tmp / "dir.spec", "not a regular file"


def _fifo(tmp: Path) -> tuple[Path, str]:
    os.mkfifo(tmp / "pipe.spec")
    return tmp / "pipe.spec", "not a regular file"


def _not_utf8(tmp: Path) -> tuple[Path, str]:
    return write(tmp / "a.spec", TINY_SPEC.encode() + b"# \xff\xfe\n"), "not valid UTF-8"


def _huge(tmp: Path) -> tuple[Path, str]:
    return write(tmp / "a.spec", TINY_SPEC + "#" * (1 << 21)), "exceeds the limit of 1048576 bytes"


def _extends_directory(tmp: Path) -> tuple[Path, str]:
    (tmp / "base.spec").mkdir()
    return write(tmp / "a.spec", 'extends = "base.spec"\n'), "no such spec file"


def _extends_not_utf8(tmp: Path) -> tuple[Path, str]:
    write(tmp / "base.spec", b'name = "\xff"\n')
    return write(tmp / "a.spec", 'extends = "base.spec"\n'), "not valid UTF-8"


PATH_PROBLEMS = [_nul_extends, _nul_project_root, _extends_loop, _spec_loop, _directory, _fifo, _not_utf8, _huge,
                 _extends_directory, _extends_not_utf8]  # fmt: skip


@pytest.mark.parametrize("make", PATH_PROBLEMS, ids=lambda f: f.__name__.strip("_"))
def test_every_path_problem_is_one_located_error(tmp_path: Path, make) -> None:
    spec, message = make(tmp_path)
    before = listing(tmp_path)
    for command in (["check", str(spec)], ["info", str(spec)], ["scale", str(spec), "--phi", "1"]):
        started = time.monotonic()
        result = run_cli(*command)
        assert time.monotonic() - started < 30
        assert result.returncode == 2, result.stderr
        assert message in single_error(result.stderr)
    with pytest.raises(specdsl.SpecError, match=message.replace("(", r"\(")):
        specdsl.load(spec)
    assert listing(tmp_path) == before


def test_stdin_specs_meet_the_same_path_rules(tmp_path: Path) -> None:
    _extends_loop(tmp_path)
    scaled = run_cli("scale", "--phi", "1", cwd=tmp_path, input='extends = "one.spec"\n')
    assert scaled.returncode == 2
    assert "symlink loop" in single_error(scaled.stderr)
    nul = run_cli("scale", "--phi", "1", cwd=tmp_path, input='extends = "a\x00b"\n')
    assert nul.returncode == 2
    assert "NUL byte" in single_error(nul.stderr)


def test_api_paths_with_a_nul_byte_or_a_loop_are_spec_errors(tmp_path: Path) -> None:
    _extends_loop(tmp_path)
    for call in (
        lambda: specdsl.load("a\x00b.spec"),
        lambda: specdsl.load(tmp_path / "one.spec"),
        lambda: specdsl.loads(TINY_SPEC, base_dir="a\x00b"),
        lambda: specdsl.loads('extends = "one.spec"\n', base_dir=tmp_path),
        lambda: specdsl.load(SPECS / "b3.spec", roots=["a\x00b"]),
        lambda: specdsl.load(SPECS / "b3.spec", roots=[tmp_path / "one.spec"]),
    ):
        with pytest.raises(specdsl.SpecError):
            call()


def test_a_copied_variant_is_told_how_to_extend_the_library(tmp_path: Path) -> None:
    copy = write(tmp_path / "my_b3.spec", (SPECS / "b3.spec").read_text())
    result = run_cli("check", str(copy))
    assert result.returncode == 2
    assert "no such spec file 'b0.spec'" in single_error(result.stderr)
    assert '  hint: the shipped spec is written extends = "specdsl:b0"' in result.stderr.splitlines()
    fixed = write(tmp_path / "fixed.spec", copy.read_text().replace('"b0.spec"', '"specdsl:b0"'))
    assert specdsl.load(fixed).network() == specdsl.load("b3").network()


# --- 2. the memory a build allocates --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_memory_bomb_is_refused_before_allocating(tmp_path: Path, backend: str) -> None:
    pytest.importorskip({"torch": "torch", "onnx": "onnxruntime"}[backend])
    from specdsl.backends import load_backend

    load_backend(backend)  # the framework's import is not the refusal's time
    spec = write(tmp_path / "bomb.spec", BOMB)
    before = listing(tmp_path)
    started = time.monotonic()
    code, out, err = run_main("build", str(spec), "--backend", backend, "-o", str(tmp_path / "out"))
    assert time.monotonic() - started < 1.0
    assert code == 2 and out == ""
    line = single_error(err)
    assert line.startswith(f"{spec}:7:5: error: building this network needs about 13,166,743,968 bytes"), line
    assert "the limit is 4,294,967,296 bytes" in line
    assert listing(tmp_path) == before and not (tmp_path / "out").exists()
    result = run_cli("build", str(spec), "--backend", backend, "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "13,166,743,968 bytes" in single_error(result.stderr)
    assert listing(tmp_path) == before


def test_the_memory_limit_is_one_check_every_entry_point_reaches(tmp_path: Path) -> None:
    spec = write(tmp_path / "bomb.spec", BOMB)
    for call in (lambda: specdsl.load(spec), lambda: specdsl.loads(BOMB), lambda: specdsl.build(spec)):
        started = time.monotonic()
        with pytest.raises(specdsl.SpecError, match="13,166,743,968 bytes"):
            call()
        assert time.monotonic() - started < 1.0
    # Scaling into the bomb is refused the same way, against the flag that asked for it.
    result = run_cli("scale", "l2", "--width", "3")
    assert result.returncode == 2
    assert single_error(result.stderr).startswith("--width 3: error: building this network needs about")


def test_every_shipped_spec_fits_the_memory_limit() -> None:
    from specdsl import limits
    from specdsl.passes.analysis import build_bytes
    from specdsl.passes.lower import lower

    sizes = {name: build_bytes(lower(specdsl.load(name))) for name in ("l2", "v2_xl", "b8", "cc_b1_8e")}
    assert max(sizes.values()) == sizes["l2"] < limits.MAX_BUILD_BYTES / 1.5
