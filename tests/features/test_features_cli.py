"""`specdsl build --features/--out-indices` and `specdsl info --features` (issue #20), under issue #18's contract:
bad input is one error line naming the flag, exit 2, and every file that existed stays byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import listing, one_error_line, run_main


def test_info_prints_the_tap_table_and_its_json() -> None:
    code, out, _ = run_main("info", "b0", "--features")
    assert code == 0
    table = out.split("\n\n")[-1].splitlines()
    assert table[0].split()[:5] == ["index", "tap", "channels", "reduction", "shape"]
    assert table[-2].split() == ["4", "stages.6.0.project.bn", "320", "32", "320x7x7"]
    assert table[-1] == "backbone (no head): 3,595,388 params, 364M MACs"  # 5,288,548 less conv_head and classifier
    code, out, _ = run_main("info", "mixnet_s", "--features", "expansion", "--out-indices", "-1", "--json")
    assert code == 0
    (row,) = json.loads(out)["features"]["taps"]
    assert (row["index"], row["channels"], row["reduction"], row["shape"]) == (0, 1200, 32, [1200, 7, 7])


def test_info_features_follow_resolution() -> None:
    code, out, _ = run_main("info", "b0", "--features", "stages.3", "--resolution", "96", "--json")
    assert code == 0 and json.loads(out)["features"]["taps"][0]["shape"] == [80, 6, 6]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--features", "stages.12"), "--features: error: 'stages.12' is not an op or stage of efficientnet-b0"),
        (("--out-indices", "1"), "--out-indices 1: error: selects among feature taps: give --features too"),
        (("--features", "--out-indices", "x"), "--out-indices x: error: expected comma-separated integers"),
        (("--features", "--out-indices", "9"), "--out-indices: error: expected distinct integers from -5 to 4"),
        (("--features", "strides,stem.act"), "--features: error: 'strides' is not an op or stage"),
    ],
)
@pytest.mark.parametrize("command", ["info", "build"])
def test_bad_selections_are_one_line_exit_2_and_nothing_written(
    command: str, flags: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    before = listing(tmp_path)
    args = ("build", "b0", "--backend", "onnx", "-o", str(tmp_path / "out")) if command == "build" else ("info", "b0")
    code, _, err = run_main(*args, *flags, cwd=tmp_path)
    assert code == 2
    assert one_error_line(err).startswith(expected)
    assert listing(tmp_path) == before


def test_build_refuses_a_quantized_backbone_before_writing(tmp_path: Path) -> None:
    code, _, err = run_main(
        "build", "b0", "--backend", "onnx", "--features", "--quantize", "int8", "--calibration", "builtin:digits",
        "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 2 and "--features: error: quantized backbones" in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_build_writes_an_onnx_backbone_with_one_output_per_tap(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnx

    from specdsl import load
    from specdsl.backends.onnx.runtime import session
    from specdsl.passes.lower import lower

    code, out, _ = run_main(
        "build", "digits_tiny", "--backend", "onnx", "--features", "--out-indices", "0,-1", "--dynamic-size",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert code == 0
    (path,) = tmp_path.glob("*.onnx")
    model = onnx.load(str(path))
    taps = lower(load("digits_tiny"), features="strides", out_indices=[0, -1]).taps
    assert [o.name for o in model.graph.output] == [t.name for t in taps]
    maps = session(path, threads=1).run(None, {"input": np.ones((1, 3, 40, 40), np.float32)})  # dynamic: 40, not 32
    assert [m.shape for m in maps] == [(1, 16, 20, 20), (1, 64, 3, 3)]
    assert f"wrote {path}" in out
