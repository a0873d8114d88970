"""`specdsl build` as a user meets it: summary, files, refusal to overwrite, atomic failure."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tests.conftest import SPECS, TINY_SPEC, listing, one_error_line, run_cli, run_main

pytest.importorskip("torch")
pytest.importorskip("safetensors")


def test_build_writes_module_and_weights(tmp_path: Path) -> None:
    out = tmp_path / "b0"
    result = run_cli("build", str(SPECS / "b0.spec"), "--backend", "torch", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "5,288,548" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["efficientnet_b0.py", "efficientnet_b0.safetensors"]
    assert all(p.stat().st_mode & 0o044 for p in out.iterdir())  # readable like ordinary output

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_cli("build", str(SPECS / "b0.spec"), "--backend", "torch", "-o", str(out))
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_bad_weights_leave_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "b0"
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    for weights, message in ((bogus, "safetensors"), (tmp_path / "missing.safetensors", "not found")):
        result = run_cli(
            "build", str(SPECS / "b0.spec"), "--backend", "torch", "-o", str(out), "--weights", str(weights)
        )
        assert result.returncode == 2
        assert result.stderr.startswith(f"{weights}: error:") and message in result.stderr
        assert "Traceback" not in result.stderr
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bogus.safetensors"]  # no staging leftovers


def test_weights_for_another_network_are_refused(tmp_path: Path) -> None:
    first = tmp_path / "v2"
    assert run_cli("build", str(SPECS / "v2_b0.spec"), "--backend", "torch", "-o", str(first)).returncode == 0
    weights = first / "efficientnetv2_b0.safetensors"
    result = run_cli("build", str(SPECS / "b0.spec"), "--backend", "torch", "-o", str(tmp_path / "b0"), "--weights",
                     str(weights))  # fmt: skip
    assert result.returncode == 2
    assert "do not fit efficientnet-b0" in result.stderr
    assert not (tmp_path / "b0").exists()


def test_force_replaces_and_seed_changes_weights(tmp_path: Path) -> None:
    out = tmp_path / "b0"
    assert run_cli("build", str(SPECS / "b0.spec"), "--backend", "torch", "-o", str(out)).returncode == 0
    first = (out / "efficientnet_b0.safetensors").read_bytes()
    result = run_cli("build", str(SPECS / "b0.spec"), "--backend", "torch", "-o", str(out), "--force", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert (out / "efficientnet_b0.safetensors").read_bytes() != first
    same = run_cli("build", str(SPECS / "b0.spec"), "--backend", "torch", "-o", str(out), "--force", "--seed", "0")
    assert same.returncode == 0
    assert (out / "efficientnet_b0.safetensors").read_bytes() == first  # deterministic under --seed


def _tiny(directory: Path) -> Path:
    spec = directory / "tiny.spec"
    spec.write_text(TINY_SPEC)
    return spec


def test_force_into_the_working_directory_keeps_every_other_file(tmp_path: Path) -> None:
    """The issue's case: `build SPEC -o "$PWD" --force` once deleted the directory, the spec included."""
    spec = _tiny(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('mine')\n")
    (tmp_path / "tiny.py").write_text("# an older build\n")  # a file build writes: replaced, with --force only
    before = listing(tmp_path)
    for output in (str(tmp_path), "."):
        result = run_cli("build", "tiny.spec", "--backend", "torch", "-o", output, "--force", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        after = listing(tmp_path)
        assert {name: after[name] for name in before if name != "tiny.py"} == {
            name: content for name, content in before.items() if name != "tiny.py"
        }
        assert sorted(after) == ["src/train.py", "tiny.py", "tiny.safetensors", "tiny.spec"]  # no staging leftovers
        assert spec.read_text() == TINY_SPEC


def test_an_existing_empty_directory_is_a_fine_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("build", str(_tiny(tmp_path)), "--backend", "torch", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["written"] == [str(out / "tiny.py"), str(out / "tiny.safetensors")]
    assert summary["report"]["params"] == 1_328_258
    assert sorted(p.name for p in out.iterdir()) == ["tiny.py", "tiny.safetensors"]


def test_build_into_a_read_only_directory(read_only_dir: Path) -> None:
    before = listing(read_only_dir)
    for out in (read_only_dir, read_only_dir / "sub"):
        result = run_cli("build", str(read_only_dir / "messy.spec"), "--backend", "torch", "-o", str(out))
        assert result.returncode == 2
        assert one_error_line(result.stderr).startswith(f"error: cannot write {out}: ")
        assert listing(read_only_dir) == before


def test_build_onto_a_full_disk(full_disk: Path, tmp_path: Path) -> None:
    before = listing(full_disk)
    for out in (full_disk, full_disk / "b0"):
        result = run_cli("build", str(_tiny(tmp_path)), "--backend", "torch", "-o", str(out), "--export", "pt2")
        assert result.returncode == 2
        assert one_error_line(result.stderr) == f"error: cannot write {out}: {os.strerror(errno.ENOSPC)}"
        assert listing(full_disk) == before
        assert sorted(p.name for p in full_disk.iterdir()) == ["keep.txt"]


def test_build_onto_a_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    before = listing(tmp_path)
    for out in ("notes.txt", "notes.txt/b0"):
        result = run_cli("build", "b0", "--backend", "torch", "-o", out, "--force", cwd=tmp_path)
        assert result.returncode == 2
        assert one_error_line(result.stderr) == f"error: cannot write {out}: {os.strerror(errno.ENOTDIR)}"
        assert listing(tmp_path) == before


def test_a_failure_part_way_through_publishing_restores_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All files or none: the second file fails to move in, so the first is taken back and the originals return."""
    from specdsl.output import files

    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny.py").write_text("# old module\n")
    (out / "tiny.safetensors").write_bytes(b"old weights")
    (out / "notes.txt").write_text("mine\n")
    before = listing(tmp_path)
    real_replace = os.replace
    moved: list[str] = []

    def replace_then_fail(source: str, target: str) -> None:
        if Path(target).parent == out and files._STAGING_PREFIX not in str(target):
            moved.append(Path(target).name)
            if len(moved) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(source, target)

    monkeypatch.setattr(files.os, "replace", replace_then_fail)
    status, _, stderr = run_main("build", str(_tiny(tmp_path)), "--backend", "torch", "-o", str(out), "--force")
    assert status == 2
    assert moved[:2] == ["tiny.py", "tiny.safetensors"]
    assert one_error_line(stderr) == f"error: cannot write {out / 'tiny.safetensors'}: {os.strerror(errno.ENOSPC)}"
    assert listing(tmp_path) == {**before, "tiny.spec": TINY_SPEC.encode()}
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "tiny.py", "tiny.safetensors"]


def test_pt2_export_takes_any_batch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import specdsl

    out = tmp_path / "out"
    result = run_cli("build", str(_tiny(tmp_path)), "--backend", "torch", "-o", str(out), "--export", "pt2")
    assert result.returncode == 0, result.stderr
    program = torch.export.load(out / "tiny.pt2").module()
    eager = specdsl.build(tmp_path / "tiny.spec", weights=out / "tiny.safetensors").eval()
    for batch in (1, 4):
        images = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = eager(images)
            assert program(images).shape == (batch, 1000)
            assert torch.allclose(program(images), expected, rtol=1e-5, atol=1e-6)


def test_an_out_of_range_seed_is_blamed_on_the_flag(tmp_path: Path) -> None:
    result = run_cli("build", "b0", "--backend", "torch", "-o", str(tmp_path / "b0"), "--seed", str(2**64))
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"--seed {2**64}: error: must be between 0 and {2**63 - 1}"
    assert list(tmp_path.iterdir()) == []
