"""`specdsl plot`: the architecture diagram and the scaling curve, rendered to PNG and checked by what is drawn."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import specdsl
from tests.conftest import one_error_line, run_cli, run_main

pytest.importorskip("matplotlib")

from matplotlib.patches import Rectangle

from specdsl.cli import diagram

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _texts(figure: object) -> list[str]:
    return [text.get_text() for ax in figure.axes for text in ax.texts]  # type: ignore[attr-defined]


def _boxes(figure: object) -> dict[str, Rectangle]:
    patches = [patch for ax in figure.axes for patch in ax.patches]  # type: ignore[attr-defined]
    return {patch.get_gid(): patch for patch in patches if isinstance(patch, Rectangle) and patch.get_gid()}


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_architecture_of_v2_s(tmp_path: Path) -> None:
    out = tmp_path / "v2_s.png"
    result = run_cli("plot", "v2_s", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert _is_png(out)
    assert json.loads(result.stdout) == {
        "written": str(out), "figure": "architecture", "by": "macs", "stages": 6,
        "rows": ["stem", *(f"stage {i}" for i in range(6)), "head"],
        "labels": ["Conv k3", "Conv k3 ×2", "Fused-MBConv k3 e4 ×4", "Fused-MBConv k3 e4 ×4",
                   "MBConv k3 e4 SE0.25 ×6", "MBConv k3 e6 SE0.25 ×9", "MBConv k3 e6 SE0.25 ×15",
                   "Conv 1x1 → 1280 · pool · dropout 0.2 · FC"],
    }  # fmt: skip

    ir = specdsl.load("v2_s")
    report = specdsl.analyze(ir)
    figure, _ = diagram.architecture_figure(ir, report)
    boxes = _boxes(figure)
    assert sorted(name for name in boxes if name.startswith("stage ")) == [f"stage {i}" for i in range(6)]
    assert {"stem", "head"} <= set(boxes)
    # To scale: box widths are in proportion to the stages' MACs.
    rows = {row.name: row for row in (report.stem, *report.stages, report.head)}
    widest = max(rows.values(), key=lambda row: row.macs)
    for name, box in boxes.items():
        assert box.get_width() == pytest.approx(max(boxes[widest.name].get_width() * rows[name].macs / widest.macs,
                                                    0.04))  # fmt: skip
    texts = _texts(figure)
    assert "stage 1  Fused-MBConv k3 e4 ×4" in texts  # kind, kernel, expansion, repeats
    assert "stage 5  MBConv k3 e6 SE0.25 ×15" in texts  # ... and SE
    assert "160→256 ch · 24→12 px · s2" in texts  # channels and feature-map size
    assert "input 3×384×384" in texts and "1000 classes" in texts


def test_architecture_by_params_and_as_svg(tmp_path: Path) -> None:
    out = tmp_path / "b0.svg"
    assert run_cli("plot", "b0", "-o", str(out), "--by", "params").returncode == 0
    assert out.read_text().count('id="stage ') == 7  # every stage box, findable in the SVG
    ir = specdsl.load("b0")
    boxes = _boxes(diagram.architecture_figure(ir, specdsl.analyze(ir), by="params")[0])
    params = {row.name: row.params for row in specdsl.analyze(ir).stages}
    assert boxes["stage 5"].get_width() / boxes["stage 6"].get_width() == pytest.approx(
        params["stage 5"] / params["stage 6"]
    )


def test_scaling_curve_of_b0(tmp_path: Path) -> None:
    out = tmp_path / "curve.png"
    result = run_cli("plot", "b0", "--scaling", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert _is_png(out)
    drawn = json.loads(result.stdout)
    published = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "l2"]
    assert list(drawn["variants"]) == published  # ordered by size, every V1 variant placed on the curve
    phis = list(drawn["variants"].values())
    assert phis[0] == 0.0 and phis == sorted(phis) and None not in phis

    ir = specdsl.load("b0")
    figure, _ = diagram.scaling_figure(ir, diagram.family(ir))
    marked = {line.get_gid() for ax in figure.axes for line in ax.lines if line.get_gid()}
    assert marked == {f"variant {name}" for name in published}
    labels = _texts(figure)
    assert all(labels.count(name) == 2 for name in published)  # labelled on both panels
    assert "φ (compound coefficient)" in [ax.get_xlabel() for ax in figure.axes]


def test_scaling_family_of_v2() -> None:
    assert set(diagram.family(specdsl.load("v2_s"))) == {"v2_s", "v2_m", "v2_l", "v2_xl"}
    assert set(diagram.family(specdsl.load("v2_b0"))) == {"v2_b0", "v2_b1", "v2_b2", "v2_b3"}


def test_plot_format_follows_the_extension(tmp_path: Path) -> None:
    result = run_cli("plot", "b0", "-o", str(tmp_path / "arch.jpg"))
    assert result.returncode == 2
    assert one_error_line(result.stderr).startswith(f"-o {tmp_path / 'arch.jpg'}: error: name a .svg, .png or .pdf")
    assert run_cli("plot", "b0", "-o", str(tmp_path / "arch.pdf")).returncode == 0
    assert (tmp_path / "arch.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.pdf"]


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [module for module in sys.modules if module.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    status, _, stderr = run_main("plot", "b0", "-o", str(tmp_path / "arch.png"))
    assert status == 2
    assert stderr == "error: drawing needs matplotlib: pip install 'specdsl[plot]'\n"
    assert list(tmp_path.iterdir()) == []
