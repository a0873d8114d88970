"""specdsl installs and imports from anywhere: a plain and an editable install, each run from the clone's root and
from its parent (where the clone, a folder named specdsl/, is on the path ahead of any installed package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from specdsl.backends.naming import file_stem
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

KINDS = ("plain", "editable")
PLACES = ("root", "parent")

#: Imports specdsl as a user would and prints where every specdsl module came from.
PROBE = """
import sys
import specdsl
print(specdsl.load("b0").name)
import specdsl.backends.onnx
for name, module in sorted(sys.modules.items()):
    if name.split(".")[0] == "specdsl" and getattr(module, "__file__", None):
        print(name, module.__file__)
"""


def _tree_files() -> list[str]:
    """The working tree as git sees it: tracked files (as they are now) and untracked ones that are not ignored."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def _venv(path: Path) -> Path:
    """A venv that sees this interpreter's packages (nothing downloads) as plain path entries, so that their .pth
    files, such as this checkout's own editable install, do not run: only the install under test provides specdsl."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    here = [entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")]
    Path(site, "outer.pth").write_text("".join(f"{entry}\n" for entry in here))
    return python


def _environment() -> dict[str, str]:
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")
    env = {key: value for key, value in os.environ.items() if key not in drop and not key.startswith("PIP_")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A copy of the working tree in a folder named specdsl/, and a venv per install kind: (clone, pythons)."""
    parent = tmp_path_factory.mktemp("install")
    clone = parent / "specdsl"
    for name in _tree_files():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    pythons = {}
    for kind in KINDS:
        python = _venv(parent / f"venv-{kind}")
        editable = ["-e"] if kind == "editable" else []
        pip = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        result = subprocess.run(
            [*pip, *editable, str(clone)], capture_output=True, text=True, env=_environment(), timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
        pythons[kind] = python
    return clone, pythons


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("kind", KINDS)
def test_import_and_build(installs: tuple[Path, dict[str, Path]], kind: str, place: str, tmp_path: Path) -> None:
    clone, pythons = installs
    python, cwd = pythons[kind], clone if place == "root" else clone.parent
    env = _environment()

    probe = subprocess.run([str(python), "-c", PROBE], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
    assert probe.returncode == 0, probe.stderr
    name, *modules = probe.stdout.splitlines()
    assert name == "efficientnet-b0"
    # Every module comes from this install: the clone or the venv, never the checkout running these tests.
    homes = (clone.resolve(), python.parent.parent.resolve())
    for line in modules:
        module, path = line.split(" ", 1)
        assert any(Path(path).resolve().is_relative_to(home) for home in homes), (module, path)
    assert {"specdsl.grammar", "specdsl.specs", "specdsl.backends.onnx"} <= {line.split()[0] for line in modules}

    out = tmp_path / "out"
    command = [str(python), "-m", "specdsl", "build", "b0", "--backend", "onnx", "-o", str(out)]
    build = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert build.returncode == 0, build.stderr
    assert "Traceback" not in build.stderr
    assert sorted(path.name for path in out.iterdir()) == [f"{file_stem('efficientnet-b0')}.onnx"]
