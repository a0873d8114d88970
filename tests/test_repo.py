"""Repository hygiene: lint, the README's commands are the ones CI runs, and every documented command parses."""

from __future__ import annotations

import re
import shlex
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


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every `specdsl ...` command line in the README's, docs' and benchmarks' code blocks, as arguments: continued
    lines joined, comments, redirections and pipes cut, optional ``[...]`` parts dropped (`torchrun ... -m specdsl`
    too). Where each came from: ``file:line``."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]:
        lines = path.read_text().splitlines()
        in_block, number = False, 0
        while number < len(lines):
            line, start = lines[number], number + 1
            while line.endswith("\\") and number + 1 < len(lines):
                number += 1
                line = line[:-1] + " " + lines[number].strip()
            number += 1
            if line.startswith("```"):
                in_block = not in_block
                continue
            match = re.match(r"\s*(?:\$ )?(?:torchrun .*?-m )?specdsl (.*)", line)
            if not in_block or not match:
                continue
            words = shlex.split(re.sub(r"\[[^\]]*\]", "", match.group(1)), comments=True)
            for stop in ("|", "&&", ">", "2>", "<"):
                words = words[: words.index(stop)] if stop in words else words
            found.append((f"{path.relative_to(ROOT)}:{start}", words))
    return found


def test_every_documented_command_parses() -> None:
    """Each command line the docs show names a command and flags `specdsl` has, with values its parser takes:
    documentation that drifts from the CLI fails here (parsed only, nothing runs)."""
    from specdsl.cli.main import UsageError, parser

    commands = documented_commands()
    assert len(commands) > 50
    for where, words in commands:
        try:
            _, unknown = parser().parse_known_args(words)
        except UsageError as error:
            raise AssertionError(f"{where}: specdsl {' '.join(words)}: {error.message}") from None
        assert not unknown, f"{where}: specdsl {' '.join(words)}: unknown {unknown}"
