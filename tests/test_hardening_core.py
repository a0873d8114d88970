"""The core install (`pip install specdsl`: lark and pydantic, no numpy) runs every command the README lists for it;
a backend whose packages are missing says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT, SPECS, one_error_line

#: Everything that is not the core's: importing any of these fails in the child, as if it were not installed.
NOT_CORE = ("numpy", "torch", "tensorflow", "keras", "onnx", "onnx_ir", "onnxruntime", "safetensors", "matplotlib")

CORE_ONLY = f"""
import sys
for name in {NOT_CORE!r}:
    sys.modules[name] = None  # `import name` raises ImportError; importlib.util.find_spec(name) is None
from specdsl.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def run_core(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CORE_ONLY, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_core_dependencies_are_lark_and_pydantic() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(requirement.split(">")[0].split("=")[0] for requirement in project["dependencies"]) == [
        "lark",
        "pydantic",
    ]
    extras = project["optional-dependencies"]
    assert all(any(r.startswith("numpy") for r in extras[extra]) for extra in ("torch", "keras", "onnx"))


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("check", str(SPECS / "b0.spec"), str(SPECS / "mixnet_s.spec")),
        ("info", "v2_s"),
        ("info", "v2_s", "--json", "--schedule"),
        ("info", "b0", "--layers"),
        ("info", "b0", "--plot", "{tmp}/b0.svg"),
        ("scale", str(SPECS / "b0.spec"), "--phi", "3", "-o", "{tmp}/b3ish.spec"),
        ("scale", str(SPECS / "b0.spec"), "--target-macs", "2G"),
        ("fmt", str(SPECS / "b3.spec")),
        ("schema",),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_core_commands_run_without_numpy_or_a_framework(args: tuple[str, ...], tmp_path: Path) -> None:
    result = run_core(*(arg.format(tmp=tmp_path) for arg in args), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout or list(tmp_path.iterdir())


@pytest.mark.parametrize("backend", ["torch", "keras", "onnx"])
def test_a_backend_without_its_packages_names_its_extra(backend: str, tmp_path: Path) -> None:
    result = run_core("build", "b0", "--backend", backend, "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert f"pip install 'specdsl[{backend}]'" in one_error_line(result.stderr)
    assert list(tmp_path.iterdir()) == []
