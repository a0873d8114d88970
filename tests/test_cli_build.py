"""`specdsl build` as a user meets it: summary, files, refusal to overwrite, atomic failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SPECS, run_cli

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
