from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (seeded from each test's name), so CI runs what was run
# here; HYPOTHESIS_PROFILE=explore draws fresh ones, to hunt for new counterexamples locally.
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
#: Every command of the console script (`specdsl --help`).
COMMANDS = ["check", "list", "info", "scale", "fmt", "schema", "build", "plot", "train", "predict", "grid", "weights"]

#: A two-stage network small enough for any test: one single-conv stage, one MBConv+SE stage.
TINY_SPEC = """\
name = "tiny"
dialect = automl
input { resolution = 64 }
stem { channels = 16 }
stages {
    r1_k3_s1_e1_i16_o16_c1
    r2_k3_s2_e4_i16_o24_se0.25
}
"""


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    return SPECS


def run_cli(*args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "specdsl", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        input=input,
        env=env,
        timeout=300,
    )


def run_main(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run `specdsl` in this process (so a test can patch the OS underneath it): (exit code, stdout, stderr)."""
    import contextlib
    import io

    from specdsl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd or ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def listing(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (hidden ones included) with its content: what a failed command must not change."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def one_error_line(stderr: str) -> str:
    """The diagnostic of a failed command: exactly one `error:` line, no traceback; progress lines may precede it."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error: " in line]
    assert len(errors) == 1, stderr
    assert all(line.startswith(("building ", "  hint: ")) or line == errors[0] for line in stderr.splitlines()), stderr
    return errors[0]


def _mount(*args: str) -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory that cannot be written to, holding a file and a spec `fmt` would reformat: a read-only bind
    mount when running as root (root ignores permission bits), else a directory without write permission."""
    directory = tmp_path / "ro"
    directory.mkdir()
    (directory / "keep.txt").write_text("mine\n")
    (directory / "messy.spec").write_text(TINY_SPEC.replace("input { resolution = 64 }", "input {resolution=64}"))
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    if not (_mount("--bind", str(directory), str(directory)) and _mount("-o", "remount,bind,ro", str(directory))):
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)
        pytest.skip("running as root without permission to mount a read-only directory")
    yield directory
    subprocess.run(["umount", "-l", str(directory)], capture_output=True)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB filesystem (tmpfs), when this process may mount one."""
    directory = tmp_path / "small"
    directory.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(directory)):
        pytest.skip("no permission to mount a small tmpfs")
    (directory / "keep.txt").write_text("mine\n")
    yield directory
    subprocess.run(["umount", "-l", str(directory)], capture_output=True)
