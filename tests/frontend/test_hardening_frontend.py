"""Issue 18, the compile side: every path the front end resolves, the memory a build allocates, the public API's
arguments and a new user's frictions each fail as one located diagnostic, exit 2, nothing touched."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    return write(tmp / "a.spec", 'extends = "base.spec"\n'), "not a regular file"


def _extends_fifo(tmp: Path) -> tuple[Path, str]:
    os.mkfifo(tmp / "base.spec")
    return write(tmp / "a.spec", 'extends = "base.spec"\n'), "not a regular file"


def _extends_not_utf8(tmp: Path) -> tuple[Path, str]:
    write(tmp / "base.spec", b'name = "\xff"\n')
    return write(tmp / "a.spec", 'extends = "base.spec"\n'), "not valid UTF-8"


PATH_PROBLEMS = [_nul_extends, _nul_project_root, _extends_loop, _spec_loop, _directory, _fifo, _not_utf8, _huge,
                 _extends_directory, _extends_fifo, _extends_not_utf8]  # fmt: skip


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


# --- 3. the public API checks its arguments like flags ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ir: specdsl.analyze(ir, batch_size=-1), "specdsl.analyze: error: batch_size must be an integer"),
        (lambda ir: specdsl.analyze(ir, batch_size=2.5), "batch_size must be an integer from 1"),
        (lambda ir: specdsl.analyze(ir, batch_size=True), "batch_size must be an integer"),
        (lambda ir: specdsl.analyze(ir, dtype="int8"), "dtype must be one of float32"),
        (lambda ir: specdsl.analyze(ir, resolution=0), "specdsl.analyze: error: resolution must be an integer"),
        (lambda ir: specdsl.analyze("b0"), "ir must be a ModelIR"),
        (lambda ir: specdsl.scale(ir, resolution=40.7), "specdsl.scale: error: resolution must be an integer"),
        (lambda ir: specdsl.scale(ir, phi=float("nan")), "phi must be a finite number in [-32, 32]"),
        (lambda ir: specdsl.scale(ir, phi="3"), "phi must be a finite number"),
        (lambda ir: specdsl.scale(ir, width=-1), "width must be a finite number in (0, 64]"),
        (lambda ir: specdsl.scale(ir, depth=float("inf")), "depth must be a finite number"),
        (lambda ir: specdsl.scale(ir, target_macs=0), "target_macs must be a finite number in (0, inf)"),
        (lambda ir: specdsl.scale(ir, phi=1, train_resolution=7), "train_resolution must be an integer from 8"),
        (lambda ir: specdsl.scale(ir, phi=1, dropout=1), "dropout must be a finite number in [0, 1)"),
        (lambda ir: specdsl.scale(ir, phi=1, name=""), "name must be a non-empty str"),
        (lambda ir: specdsl.load(3), "specdsl.load: error: path must be a path"),
        (lambda ir: specdsl.load(""), "path must be a spec file"),
        (lambda ir: specdsl.load("b0", roots="specs"), "roots must be a sequence of directories"),
        (lambda ir: specdsl.loads(b"name = 'x'"), "specdsl.loads: error: text must be spec text"),
        (lambda ir: specdsl.loads(TINY_SPEC, base_dir=3), "base_dir must be a path"),
        (lambda ir: specdsl.build(ir, seed=-1), "specdsl.build: error: seed must be an integer from 0"),
        (lambda ir: specdsl.build(ir, seed=10**70), "seed must be an integer"),
        (lambda ir: specdsl.build(ir, backend=None), "backend must be a backend's name"),
        (lambda ir: specdsl.build(ir, deploy="yes"), "deploy must be True or False"),
        (lambda ir: specdsl.build(ir, weights=3.5), "weights must be a path"),
        (lambda ir: specdsl.lower("b0"), "specdsl.lower: error: ir must be a ModelIR"),
    ],
)
def test_api_arguments_are_validated_like_flags(call, message: str) -> None:
    ir = specdsl.loads(TINY_SPEC)
    with pytest.raises(specdsl.SpecError) as caught:
        call(ir)
    assert message in str(caught.value)


def test_valid_api_arguments_still_work() -> None:
    ir = specdsl.load("b0")
    assert specdsl.analyze(ir, batch_size=8, dtype="float16", resolution=240).resolution == 240
    assert specdsl.scale(ir, resolution=240).resolution == 240
    assert specdsl.scale(ir, phi=1).spec.scaling.width == 1.1


@pytest.mark.parametrize(
    "args",
    [
        ["info", "b0", "--batch-size", "-1"],
        ["info", "b0", "--resolution", "0"],
        ["build", "b0", "--backend", "torch", "--seed", "9" * 70],
        ["build", "b0", "--backend", "torch", "--seed", "-1"],
        ["scale", "b0", "--phi", "nan"],
        ["scale", "b0", "--phi", "inf"],
        ["scale", "b0", "--width", "-1"],
        ["scale", "b0", "--target-macs", "0"],
        ["scale", "b0", "--resolution", "0"],
        ["scale", "b0", "--phi", "1", "--dropout", "nan"],
    ],
)
def test_bad_flag_values_are_one_line(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(*args, "-o", str(tmp_path / "out")) if args[0] != "info" else run_cli(*args)
    assert result.returncode == 2
    line = single_error(result.stderr)
    assert f"{args[-2]} {args[-1]}: error: " in line, line
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


# --- 4. scaled multipliers are the shortest decimals of the same network ---------------------------------------------


@given(st.sampled_from(["b0", "v2_s", "mnasnet_100"]), st.floats(-3, 8, allow_nan=False).map(lambda x: round(x, 2)))
@settings(max_examples=25, deadline=None)
def test_scaled_multipliers_are_short_and_exact(name: str, phi: float) -> None:
    from specdsl.frontend.format import render_document

    base = specdsl.load(name)
    try:
        scaled = specdsl.scale(base, phi=phi)
    except specdsl.SpecError:
        return  # beyond a limit
    text = render_document(scaled.spec)
    assert specdsl.loads(text).network() == scaled.network()  # the written spec is the same network
    values = [scaled.spec.scaling.width, scaled.spec.scaling.depth, *(scaled.spec.scaling.stage_depth or [])]
    assert all(len(repr(value)) <= 8 for value in values), values  # never 1.3310000000000004


def test_phi_3_writes_a_short_width() -> None:
    result = run_cli("scale", "b0", "--phi", "3")
    assert result.returncode == 0, result.stderr
    assert "1.3310000000000004" not in result.stdout and "width = 1.33\n" in result.stdout
    assert specdsl.loads(result.stdout).network() == specdsl.scale(specdsl.load("b0"), phi=3).network()


# --- 5. MixNet (and se_width = expanded) shown as the IR says -------------------------------------------------------


def test_mixnet_kernels_and_expansions_are_shown_as_written(tmp_path: Path) -> None:
    import json

    report = json.loads(run_cli("info", "mixnet_s", "--json").stdout)
    stages = [(row["kernels"], row["expansions"], row["se_ratios"]) for row in report["stages"]]
    assert stages[1] == ([[3]], [6.0, 3.0], [])
    assert stages[2] == ([[3, 5, 7], [3, 5]], [6.0], [0.5])
    assert stages[4] == ([[3, 5, 7], [3, 5, 7, 9]], [6.0, 3.0], [0.5])
    assert stages[5][0] == [[3, 5, 7, 9, 11], [3, 5, 7, 9]]
    table = run_cli("info", "mixnet_s").stdout
    assert " 3.5.7.9.11/3.5.7.9 " in table and " 3.5.7/3.5 " in table
    pytest.importorskip("matplotlib")
    out = tmp_path / "m.svg"
    drawn = json.loads(run_cli("plot", "mixnet_s", "-o", str(out), "--json").stdout)
    assert drawn["labels"][2:7] == [
        "MBConv k3 e6/3 ×2",
        "MBConv k3.5.7/3.5 e6 SE0.5 ×4",
        "MBConv k3.5.7/3.5 e6 SE0.25 ×3",
        "MBConv k3.5.7/3.5.7.9 e6/3 SE0.5 ×3",
        "MBConv k3.5.7.9.11/3.5.7.9 e6 SE0.5 ×3",
    ]
    # se_width = expanded: the ratio the spec wrote (0.25 of the expanded width), not se / input channels.
    v3 = json.loads(run_cli("plot", "mobilenetv3_large_100", "-o", str(out), "--force", "--json").stdout)
    assert "MBConv k5 e3 SE0.25 ×3" in v3["labels"] and "MBConv k3 e6/2.5/2.3 ×4" in v3["labels"]


# --- 6. build: conflicts before building, the planned names are the written ones, no TensorFlow noise -------------


def never_emit(emit):
    """``emit`` (same signature: the CLI checks options against it) that fails the test if a build gets that far."""

    @functools.wraps(emit)
    def never(*args, **kwargs):
        raise AssertionError("built although the output exists")

    return never


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_build_refuses_existing_output_before_building(tmp_path: Path, backend: str, monkeypatch) -> None:
    pytest.importorskip({"torch": "torch", "onnx": "onnxruntime"}[backend])
    from specdsl.backends import load_backend

    out = tmp_path / "out"
    code, stdout, _ = run_main("build", "digits_tiny", "--backend", backend, "-o", str(out), "--json")
    assert code == 0
    import json

    written = sorted(Path(path).name for path in json.loads(stdout)["written"])
    from specdsl.cli.commands import _planned_outputs

    assert written == sorted(str(path) for path in _planned_outputs(backend, "digits_tiny", None))
    before = listing(tmp_path)

    monkeypatch.setattr(load_backend(backend), "emit", never_emit(load_backend(backend).emit))
    code, stdout, stderr = run_main("build", "digits_tiny", "--backend", backend, "-o", str(out))
    assert code == 2 and stdout == ""
    assert "building" not in stderr
    assert single_error(stderr).startswith(f"{out / written[0]}: error: output exists")
    assert listing(tmp_path) == before


def test_torch_export_is_planned_too(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    from specdsl.backends import load_backend

    (tmp_path / "digits_tiny.pt2").write_bytes(b"mine")
    monkeypatch.setattr(load_backend("torch"), "emit", never_emit(load_backend("torch").emit))
    code, _, stderr = run_main("build", "digits_tiny", "--backend", "torch", "-o", str(tmp_path), "--export", "pt2")
    assert code == 2 and "digits_tiny.pt2: error: output exists" in stderr
    assert (tmp_path / "digits_tiny.pt2").read_bytes() == b"mine"


def test_keras_build_prints_no_tensorflow_noise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("keras")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # tests/keras/helpers.py sets it for the process
    env_before = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    result = run_cli("build", "digits_tiny", "--backend", "keras", "-o", str(tmp_path / "k"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("building digits-tiny") and len(lines) == 2 and lines[1].startswith("built in"), lines
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["digits_tiny.keras"]
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == env_before  # a test process is not changed by the CLI's default
    again = run_cli("build", "digits_tiny", "--backend", "keras", "-o", str(tmp_path / "k"))
    assert again.returncode == 2
    assert single_error(again.stderr).endswith("output exists; pass --force to replace it")
    assert "oneDNN" not in again.stderr and "absl" not in again.stderr
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")  # a level the user set is kept; absl's pre-init line still goes
    forced = run_cli("build", "digits_tiny", "--backend", "keras", "-o", str(tmp_path / "k"), "--force")
    assert forced.returncode == 0 and "absl" not in forced.stderr, forced.stderr


def test_training_meets_the_memory_limit_too(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    spec = write(tmp_path / "bomb.spec", BOMB)
    before = listing(tmp_path)
    result = run_cli("train", str(spec), "-o", str(tmp_path / "run"), "--set", "epochs=1")
    assert result.returncode == 2
    assert "13,166,743,968 bytes" in single_error(result.stderr)
    assert listing(tmp_path) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("efficientnet-b0", "  hint: the shipped spec named 'efficientnet-b0' is b0: `specdsl info b0`"),
        (
            "mixnet_q",
            "  hint: close matches: mixnet_s, mixnet_m, mixnet_l, mixnet_xl (`specdsl list` shows the library)",
        ),
        ("nope.spec", "  hint: `specdsl list` shows the shipped specs, usable by name"),
    ],
)
def test_unknown_names_get_a_few_close_matches(name: str, hint: str) -> None:
    for command in ("info", "check"):
        result = run_cli(command, name)
        assert result.returncode == 2
        assert single_error(result.stderr).startswith(f"{name}: error: no such file, and no shipped spec")
        assert hint in result.stderr.splitlines()
        assert "v2_xl" not in result.stderr  # not the whole library on one line


def test_an_unreadable_spec_is_one_located_error(tmp_path: Path, monkeypatch) -> None:
    """Root reads any file, so the refusal is the OS's, simulated where the front end opens the file."""
    spec = write(tmp_path / "locked.spec", TINY_SPEC)
    original = Path.open

    def refuse(self: Path, *args, **kwargs):
        if self.name == "locked.spec":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    code, out, err = run_main("check", str(spec))
    assert code == 2 and out == ""
    assert single_error(err) == f"{spec}: error: cannot read spec: Permission denied"
