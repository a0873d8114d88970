from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

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
