"""Hardening of the CLI's top level: stop signals and staging, misused flags, diagnostics that cannot be printed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from specdsl.cli import files
from tests.conftest import ROOT, listing, one_error_line, run_cli, run_main

COMMANDS = ["check", "list", "info", "scale", "fmt", "schema", "build", "plot", "train", "grid"]


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "specdsl", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _staging(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith(files._STAGING_PREFIX))


def _build(backend: str, out: Path, *extra: str) -> list[str]:
    return ["build", "b0", "--backend", backend, "-o", str(out), *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """What a complete build writes (seed 0), per backend: the only other state a stopped build may leave."""
    outputs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path_factory.mktemp(f"reference-{backend}")
        result = run_cli(*_build(backend, out))
        assert result.returncode == 0, result.stderr
        outputs[backend] = listing(out)
    return outputs


# Seeded delays (seconds after the start of the process): during imports, spec loading, model building, the
# weights write and publishing. A build of b0 takes about 2.5 s here; later delays may find it done.
_DELAYS = sorted(random.Random("specdsl-sigterm").uniform(0.2, 3.5) for _ in range(6))


@pytest.mark.parametrize(
    ("backend", "delay", "signum"),
    [("torch", delay, signal.SIGTERM) for delay in _DELAYS]
    + [("torch", 2.0, signal.SIGHUP), ("onnx", 1.8, signal.SIGTERM), ("onnx", 2.6, signal.SIGTERM)],
)
def test_a_stop_signal_leaves_nothing_but_what_was_there(
    backend: str, delay: float, signum: int, tmp_path: Path, reference: dict[str, dict[str, bytes]]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    old = run_cli(*_build(backend, out, "--seed", "1"))  # an earlier build, replaced with --force below
    assert old.returncode == 0, old.stderr
    before = listing(out)
    process = _start(*_build(backend, out, "--force"))
    time.sleep(delay)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    after = listing(out)
    complete = {**before, **reference[backend]}
    assert process.returncode in (0, 128 + signum), stderr
    assert after in (before, complete)  # all or nothing: the old build, or the whole new one
    if process.returncode == 0:
        assert after == complete
    assert _staging(out) == []
    again = run_cli(*_build(backend, out, "--force"))
    assert again.returncode == 0, again.stderr
    assert listing(out) == complete and _staging(out) == []


def _wait_for_staging(out: Path, process: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        for name in _staging(out):
            if name.startswith(f"{files._STAGING_PREFIX}{process.pid}-") and (out / name / "owner").stat().st_size:
                return out / name
        time.sleep(0.02)
    raise AssertionError("the build never staged its output")


def test_the_next_build_cleans_up_after_a_killed_one(tmp_path: Path, reference: dict[str, dict[str, bytes]]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    # Look-alikes that are not provably a dead specdsl's staging: no owner record; a live process's record.
    (out / f"{files._STAGING_PREFIX}mine").mkdir()
    (out / f"{files._STAGING_PREFIX}mine" / "notes.txt").write_text("not yours\n")
    live = out / f"{files._STAGING_PREFIX}live"
    live.mkdir()
    (live / "owner").write_text(json.dumps(files._owner_record()))  # this test's process: alive
    process = _start(*_build("torch", out))
    stale = _wait_for_staging(out, process)
    time.sleep(0.3)
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert stale.is_dir()  # SIGKILL cannot be handled: the staging directory stays ...
    result = run_cli(*_build("torch", out))
    assert result.returncode == 0, result.stderr
    assert not stale.exists()  # ... until the next write into the same directory
    assert _staging(out) == sorted([f"{files._STAGING_PREFIX}live", f"{files._STAGING_PREFIX}mine"])
    assert listing(out) == {
        **reference["torch"],
        "keep.txt": b"mine\n",
        f"{files._STAGING_PREFIX}mine/notes.txt": b"not yours\n",
        f"{files._STAGING_PREFIX}live/owner": json.dumps(files._owner_record()).encode(),
    }


def test_a_running_builds_staging_is_left_alone(tmp_path: Path) -> None:
    """A second writer into the same directory never removes the staging of a build that is still running."""
    out = tmp_path / "out"
    out.mkdir()
    process = _start(*_build("torch", out))
    staging = _wait_for_staging(out, process)
    assert files.remove_stale_staging(out) == []
    assert staging.is_dir() or process.poll() is not None
    assert process.wait(timeout=120) == 0
    assert _staging(out) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_misused_flag_is_one_line_for_every_command(command: str) -> None:
    code, _, stderr = run_main(command, "--no-such-flag")
    assert code == 2
    line = one_error_line(stderr)
    assert line.startswith(f"error: specdsl {command}: ")
    assert "usage:" not in stderr
    assert stderr.splitlines()[1:] == [f"  hint: see `specdsl {command} --help`"]


def test_a_bad_flag_value_names_the_flag() -> None:
    code, _, stderr = run_main("build", "b0", "--backend", "onnx", "--opset", "16")
    assert code == 2
    assert one_error_line(stderr) == (
        "error: specdsl build: argument --opset: invalid choice: 16 (choose from 17, 18, 19, 20, 21)"
    )
    code, _, stderr = run_main("frobnicate")
    assert code == 2 and one_error_line(stderr).startswith("error: specdsl: argument COMMAND: invalid choice")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "args", [("check", "no-such-spec"), ("build", "b0", "--opset", "3"), ("info", "b0", "--json"), ("list",)]
)
def test_a_diagnostic_that_cannot_be_printed_still_exits_2(args: tuple[str, ...]) -> None:
    """stderr (and, for the last two, stdout) on a full disk: the exit code still says what happened."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "specdsl", *args], cwd=ROOT, stdout=full, stderr=full, timeout=120
        )
    assert result.returncode == 2
