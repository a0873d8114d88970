"""`outputs { … }` (issue #20): a backbone spec is a file, not a flag; bad declarations are located errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import specdsl
from specdsl.errors import SpecError
from specdsl.frontend.format import render_document
from specdsl.passes.lower import lower, lower_for_build
from tests.conftest import listing, run_main

BACKBONE = """extends = "specdsl:b0"
name = "b0-backbone"

outputs {
    features = strides
    out_indices = [2, 3, -1]
}
"""


def write(tmp_path: Path, text: str, name: str = "backbone.spec") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_declared_backbone_is_what_every_build_gets(tmp_path: Path) -> None:
    ir = specdsl.load(write(tmp_path, BACKBONE))
    b0 = specdsl.load("b0")
    declared = lower_for_build(ir)
    assert declared.taps == lower(b0, features="strides", out_indices=[2, 3, -1]).taps
    assert [t.channels for t in declared.taps] == [40, 112, 320]
    assert lower(ir).taps == ()  # the lowering itself stays the whole network (weights, analysis)
    assert lower_for_build(ir, "expansion").taps[0].name == "stages.0.0.se.scale"  # arguments win


def test_declared_backbone_builds_in_torch_and_onnx(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx_ir")
    ir = specdsl.api.at_resolution(specdsl.load(write(tmp_path, BACKBONE)), 64)
    model = specdsl.build(ir, seed=3).eval()
    assert model.feature_info.reduction() == [8, 16, 32]
    with torch.no_grad():
        maps = model(torch.zeros(1, 3, 64, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(40, 8, 8), (112, 4, 4), (320, 2, 2)]
    onnx_model = specdsl.build(ir, backend="onnx")
    assert [v.name for v in onnx_model.graph.outputs] == ["stages.2.1.add", "stages.4.2.add", "stages.6.0.project.bn"]


def test_outputs_round_trip_through_fmt_and_render(tmp_path: Path) -> None:
    path = write(tmp_path, BACKBONE)
    code, out, _ = run_main("fmt", str(path))
    assert code == 0 and "outputs {\n    features = strides\n    out_indices = [2, 3, -1]\n}" in out
    rendered = render_document(specdsl.load(path).spec)
    assert "outputs {" in rendered
    again = specdsl.loads(rendered, "rendered.spec")
    assert again.spec.outputs == specdsl.load(path).spec.outputs
    assert "outputs" not in render_document(specdsl.load("b0").spec)  # a classifier is written as before


def test_info_shows_a_declared_backbone_without_flags(tmp_path: Path) -> None:
    code, out, _ = run_main("info", str(write(tmp_path, BACKBONE)))
    assert code == 0 and "stages.4.2.add" in out and "backbone (no head):" in out


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ('features = ["stages.9"]', r"backbone\.spec:4:\d+: error: 'stages\.9' is not an op or stage"),
        ("features = strides\n    out_indices = [7]", r"backbone\.spec:\d+:\d+: error: expected distinct integers"),
        ("out_indices = [1]", r"backbone\.spec:\d+:\d+: error: .*give features too"),
        ("features = 3", r"backbone\.spec:4:\d+: error: outputs\.features"),
        ("feature = strides", r"backbone\.spec:4:\d+: error: .*feature"),
    ],
)
def test_bad_declarations_are_located_one_line_errors_and_nothing_is_written(
    outputs: str, message: str, tmp_path: Path
) -> None:
    path = write(tmp_path, f'extends = "specdsl:b0"\nname = "b"\noutputs {{\n    {outputs}\n}}\n')
    before = listing(tmp_path)
    code, _, err = run_main("build", str(path), "--backend", "onnx", "-o", str(tmp_path / "out"))
    assert code == 2 and "Traceback" not in err and "building" not in err  # refused before any work
    (line,) = [line for line in err.splitlines() if "error: " in line]  # then the excerpt of the spec line
    assert re.search(message, line), err
    assert listing(tmp_path) == before


def test_api_build_reports_a_bad_declaration_with_its_location(tmp_path: Path) -> None:
    ir = specdsl.load(write(tmp_path, 'extends = "specdsl:b0"\nname = "b"\noutputs {\n    features = nope\n}\n'))
    with pytest.raises(SpecError) as caught:
        lower_for_build(ir)
    assert caught.value.line == 4 and "'nope' is not an op or stage" in caught.value.message


def test_check_locates_a_bad_declaration(tmp_path: Path) -> None:
    path = write(tmp_path, 'extends = "specdsl:b0"\nname = "b"\noutputs {\n    features = ["stages.7"]\n}\n')
    code, _, err = run_main("check", str(path))
    assert code == 2 and f"{path}:4:5: error: 'stages.7' is not an op or stage of b" in err
    code, out, _ = run_main("check", str(write(tmp_path, BACKBONE, "good.spec")))
    assert code == 0 and out.startswith("ok ")


def test_a_declared_backbone_trains_as_its_whole_classifier_and_its_weights_build_the_backbone(tmp_path: Path) -> None:
    """`specdsl train` on a spec with `outputs { … }` trains the whole network (the head gives the loss); the run's
    weights file then builds the declared backbone, whose taps are the oracle's on those weights."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("kornia")
    pytest.importorskip("sklearn")
    from tests.training.conftest import TRAIN_SPEC

    spec = write(tmp_path, TRAIN_SPEC + "outputs {\n    features = strides\n}\n")
    run = tmp_path / "run"
    code, _, err = run_main("train", str(spec), "-o", str(run), "--epochs", "3", "--threads", "1", "-q")
    assert code == 0, err
    ir = specdsl.load(run / "spec.spec")
    state = specdsl.weights.load(run / "best.safetensors", ir)
    assert any(name.startswith("classifier.") for name in state)  # the whole network was trained
    backbone = specdsl.build(ir, weights=run / "best.safetensors").eval()
    assert backbone.feature_info.reduction() == [2, 4]  # stem stride 2, then the stride-2 stage
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        maps = backbone(torch.from_numpy(x))
    for got, expected in zip(maps, specdsl.reference.run(lower_for_build(ir), state, x), strict=True):
        assert np.abs(got.double().numpy() - expected).max() <= 1e-4 * np.abs(expected).max()
