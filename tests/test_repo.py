"""Repository hygiene: lint, and the README's commands are the ones CI runs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_starts_with_two_commands_that_ci_runs() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert all(command in ci for command in commands)
    assert "torch==2.13.0" in commands[0]  # pinned: an unpinned torch pulls CUDA wheels
    assert "--no-deps geffnet==1.0.2" in commands[0]  # its metadata asks for torchvision, which pulls CUDA torch


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is part of the [test] extra")
def test_ruff_clean() -> None:
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(["ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_package_is_in_the_wheel() -> None:
    """A package missing from pyproject's list works in an editable checkout and vanishes from a real install."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    roots = {"specdsl": ROOT / "specdsl", "specdsl.backends": ROOT / "backends"}
    found = set()
    for prefix, root in roots.items():
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            found.add(".".join((prefix, *relative)))
    assert found <= declared, f"add to [tool.setuptools] packages (and package-dir for backends): {found - declared}"
