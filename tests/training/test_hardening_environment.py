"""torchrun's environment is checked once, before torch loads: a bad variable is one line naming it, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from specdsl.errors import SpecError
from specdsl.training.environment import TorchrunEnvironment, torchrun_environment
from tests.conftest import ROOT, listing, one_error_line

TORCHRUN = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_no_variables_is_one_process() -> None:
    assert torchrun_environment({}) == TorchrunEnvironment(1, 0, 0, 1, None, None)


def test_torchrun_variables_are_read() -> None:
    environ = {"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", **TORCHRUN}
    assert torchrun_environment(environ) == TorchrunEnvironment(8, 5, 1, 4, "127.0.0.1", 29500)
    assert torchrun_environment({"WORLD_SIZE": "4", "LOCAL_RANK": "3", **TORCHRUN}).local_world_size == 4


@pytest.mark.parametrize(
    ("environ", "variable", "found"),
    [
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE", "'abc'"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE", "'0'"),
        ({"WORLD_SIZE": "-2"}, "WORLD_SIZE", "'-2'"),
        ({"WORLD_SIZE": "9" * 70}, "WORLD_SIZE", "'99999"),
        ({"RANK": "abc"}, "RANK", "'abc'"),
        ({"RANK": "1"}, "RANK", "RANK=1"),
        ({"RANK": "4", "WORLD_SIZE": "4", **TORCHRUN}, "RANK", "WORLD_SIZE='4'"),
        ({"LOCAL_RANK": "abc"}, "LOCAL_RANK", "'abc'"),
        ({"LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK", "LOCAL_WORLD_SIZE='2'"),
        ({"LOCAL_WORLD_SIZE": "0"}, "LOCAL_WORLD_SIZE", "'0'"),
        ({"LOCAL_WORLD_SIZE": "1.5"}, "LOCAL_WORLD_SIZE", "'1.5'"),
        ({"WORLD_SIZE": "2"}, "MASTER_ADDR", "WORLD_SIZE=2"),
        ({"WORLD_SIZE": "2", "MASTER_ADDR": "h"}, "MASTER_PORT", "WORLD_SIZE=2"),
        ({"MASTER_PORT": "99999"}, "MASTER_PORT", "'99999'"),
        ({"MASTER_PORT": "0"}, "MASTER_PORT", "'0'"),
        ({"MASTER_PORT": "http"}, "MASTER_PORT", "'http'"),
        ({"MASTER_ADDR": "a host"}, "MASTER_ADDR", "'a host'"),
        ({"MASTER_ADDR": ""}, "MASTER_ADDR", "''"),
        ({"RANK": "1\x00"}, "RANK", "\\x00"),
    ],
)
def test_a_bad_variable_is_named(environ: dict[str, str], variable: str, found: str) -> None:
    with pytest.raises(SpecError) as caught:
        torchrun_environment(environ)
    assert caught.value.path == f"environment variable {variable}"
    assert found in caught.value.message and "\n" not in str(caught.value)


def test_the_checks_import_no_framework() -> None:
    code = (
        "import sys, specdsl.training.environment as e, specdsl.training.options, specdsl.training.recipe; "
        "from specdsl.training import TrainOptions; e.torchrun_environment({}); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("variables", "variable"),
    [
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE"),
        ({"LOCAL_RANK": "abc"}, "LOCAL_RANK"),
        ({"WORLD_SIZE": "2"}, "MASTER_ADDR"),
    ],
)
def test_train_names_the_variable_before_any_work(tmp_path: Path, variables: dict[str, str], variable: str) -> None:
    (tmp_path / "keep.txt").write_text("mine\n")
    before = listing(tmp_path)
    env = {key: value for key, value in os.environ.items() if key not in ("MASTER_ADDR", "MASTER_PORT")}
    done = subprocess.run(
        [sys.executable, "-m", "specdsl", "train", "specs/digits_tiny.spec", "-o", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=ROOT, env={**env, **variables, "PYTHONWARNINGS": "ignore"}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert one_error_line(done.stderr).startswith(f"environment variable {variable}: error: ")
    assert listing(tmp_path) == before
