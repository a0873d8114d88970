"""Hardening of the CLI's top level: stop signals and staging, misused flags, diagnostics that cannot be printed."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from specdsl.output import files
from tests.conftest import COMMANDS, ROOT, listing, one_error_line, run_cli, run_main


def _start(*args: str, ignore: tuple[int, ...] = ()) -> subprocess.Popen[str]:
    """The console script in the background; ``ignore``: signals it starts with ignored (as under ``nohup``)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def ignored() -> None:
        for signum in ignore:
            signal.signal(signum, signal.SIG_IGN)

    return subprocess.Popen(
        [sys.executable, "-m", "specdsl", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignored if ignore else None,
    )


def _staging(directory: Path) -> list[str]:
    if not directory.exists():
        return []
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


# When to stop the build: (delay from the start of the process, or None; then a seeded delay after its staging
# directory appears, or None). Before staging: Python's start-up, imports, spec loading. After: model building,
# the weights write, publishing (about 0.5 s for b0 here); the later ones may find the build done.
_RNG = random.Random("specdsl-sigterm")
_MOMENTS = [(0.05, None), (0.4, None), (None, 0.0), *((None, round(_RNG.uniform(0.0, 0.9), 3)) for _ in range(5))]


@pytest.mark.parametrize(
    ("backend", "moment", "signum"),
    [("torch", moment, signal.SIGTERM) for moment in _MOMENTS]
    + [("torch", (None, 0.1), signal.SIGHUP)]
    + [("onnx", moment, signal.SIGTERM) for moment in ((None, 0.0), (None, 0.3))],
)
def test_a_stop_signal_leaves_nothing_but_what_was_there(
    backend: str,
    moment: tuple[float | None, float | None],
    signum: int,
    tmp_path: Path,
    reference: dict[str, dict[str, bytes]],
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    old = run_cli(*_build(backend, out, "--seed", "1"))  # an earlier build, replaced with --force below
    assert old.returncode == 0, old.stderr
    before = listing(out)
    process = _start(*_build(backend, out, "--force"))
    delay, after_staging = moment
    if delay is not None:
        time.sleep(delay)
    else:
        _wait_for_staging(out, process)
        time.sleep(after_staging or 0.0)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    after = listing(out)
    complete = {**before, **reference[backend]}
    # 128 + signum: stopped by specdsl's handler; -signum: the default action, before the handler was installed
    # (Python starting) or after the command had returned
    assert process.returncode in (0, 128 + signum, -signum), stderr
    assert after in (before, complete)  # all or nothing: the old build, or the whole new one
    if process.returncode == 0:
        assert after == complete
    if after_staging == 0.0:
        assert process.returncode == 128 + signum and after == before  # caught while staging: nothing published
    assert _staging(out) == []
    again = run_cli(*_build(backend, out, "--force"))
    assert again.returncode == 0, again.stderr
    assert listing(out) == complete and _staging(out) == []


def _wait_for_staging(out: Path, process: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        for name in _staging(out):
            owner = out / name / "owner"  # written once the directory exists; gone again once published
            with contextlib.suppress(FileNotFoundError):
                if name.startswith(f"{files._STAGING_PREFIX}{process.pid}-") and owner.stat().st_size:
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


def test_a_signal_started_ignored_stays_ignored(tmp_path: Path, reference: dict[str, dict[str, bytes]]) -> None:
    """Under ``nohup`` (SIGHUP ignored) a hang-up does not stop the build."""
    out = tmp_path / "out"
    process = _start(*_build("torch", out), ignore=(signal.SIGHUP,))
    _wait_for_staging(out, process)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert listing(out) == reference["torch"]


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


@pytest.mark.parametrize(
    ("command", "code"), [("list >&-", 0), ("check no-such-spec 2>&-", 2), ("check b0 >&- 2>&-", 0)]
)
def test_a_closed_stdout_or_stderr_is_no_internal_error(command: str, code: int) -> None:
    result = subprocess.run(
        ["sh", "-c", f"{sys.executable} -m specdsl {command}"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == code and "Traceback" not in result.stderr, result.stderr


def test_a_stop_whose_exception_was_swallowed_still_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal can land where Python only reports the exception as 'ignored' (a finalizer) and carries on: the
    command still publishes nothing, says nothing about it, and exits 128 + the signal."""
    from specdsl.cli import commands

    real = commands.cmd_scale

    def swallowed_then_scale(args: object) -> int:
        with contextlib.suppress(files.Terminated):  # what the handler raises, then lost
            files._on_signal(signal.SIGTERM, None)
        return real(args)

    monkeypatch.setattr(commands, "cmd_scale", swallowed_then_scale)
    before = listing(tmp_path)
    code, _, stderr = run_main("scale", "b0", "--phi", "1", "-o", str(tmp_path / "b1ish.spec"))
    assert code == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
    assert listing(tmp_path) == before


@pytest.mark.parametrize("where", ["after the command returned", "while reporting an error"])
def test_a_stop_outside_the_command_is_an_exit_code_not_a_traceback(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal whose handler runs once the command has returned, or inside `main`'s own error reporting, is still
    128 + the signal and nothing else: no traceback escapes the console script."""
    from specdsl.cli import main

    def stopped(*_: object) -> None:
        files._on_signal(signal.SIGTERM, None)  # the handler, run here as if the signal landed here

    if where == "after the command returned":
        monkeypatch.setattr(files, "stop_received", stopped)
        args = ("check", "b0")
    else:
        monkeypatch.setattr(main, "_say", stopped)
        args = ("info", "no-such-spec")
    code, _, stderr = run_main(*args)
    assert code == 128 + signal.SIGTERM and stderr == ""
