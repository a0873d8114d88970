"""Block strings: every published one decodes in its dialect; dialects never guess."""

from __future__ import annotations

import pytest

import specdsl
from tests.conftest import SPECS
from tests.published import V1_B0_TIMM, V1_TPU, V2_AUTOML, V2_S_TIMM


def spec_text(dialect: str, stages: list[str], stem: int = 32, extra: str = "") -> str:
    lines = "\n".join(f"    {stage}" for stage in stages)
    return (
        f'name = "t"\ndialect = {dialect}\ninput {{ resolution = 224 }}\nstem {{ channels = {stem} }}\n'
        f"stages {{\n{lines}\n}}\n{extra}"
    )


@pytest.mark.parametrize("block", V1_TPU)
def test_tpu_strings_decode(block: str) -> None:
    ir = specdsl.loads(spec_text("tpu", [block], stem=int(block.split("_i")[1].split("_")[0])))
    first = ir.blocks[0]
    assert first.kind == "mbconv"
    assert first.se_channels == max(1, int(first.in_channels * 0.25))


@pytest.mark.parametrize("variant", sorted(V2_AUTOML))
def test_automl_strings_decode(variant: str) -> None:
    blocks = V2_AUTOML[variant].split()
    stem = int(blocks[0].split("_i")[1].split("_")[0])
    ir = specdsl.loads(spec_text("automl", blocks, stem=stem))
    for stage, text in zip(ir.stages, blocks, strict=True):
        kinds = {block.kind for block in stage.blocks}
        if "c1" in text:
            assert kinds == ({"conv"} if "_e1_" in text else {"fused"})
        else:
            assert kinds == {"mbconv"}
        assert all((block.se_channels is not None) == ("se" in text) for block in stage.blocks)


def test_timm_and_automl_give_the_same_v2_s() -> None:
    shipped = specdsl.load(SPECS / "v2_s.spec")
    text = (SPECS / "v2_s.spec").read_text()
    start, end = text.index("stages {"), text.index("}", text.index("stages {"))
    timm_stages = "stages {\n" + "\n".join(f"    {s}" for s in V2_S_TIMM) + "\n"
    timm_text = text[:start] + timm_stages + text[end:]
    timm_text = timm_text.replace("dialect = automl", "dialect = timm")
    assert specdsl.loads(timm_text, "v2_s_timm.spec").network() == shipped.network()


def test_timm_and_tpu_give_the_same_b0_and_b4() -> None:
    for variant in ("b0", "b4"):
        shipped = specdsl.load(SPECS / f"{variant}.spec")
        scaling = shipped.spec.scaling
        extra = (
            f"scaling {{ width = {scaling.width} depth = {scaling.depth} }}\n"
            f"head {{ dropout = {shipped.head.dropout} }}"
        )
        text = spec_text("timm", V1_B0_TIMM, extra=extra).replace(
            "resolution = 224", f"resolution = {shipped.resolution}"
        )
        assert specdsl.loads(text, "timm.spec").network() == shipped.network()


def test_timm_activation_and_skip_options() -> None:
    ir = specdsl.loads(
        spec_text("timm", ["cn_r2_k3_s1_c32_skip_nre", "ir_r2_k3_s1_e1_c32_noskip_nhs", "er_r1_k3_s1_e1_c32"])
    )
    conv, inverted, edge = ir.stages
    assert all(block.activation == "relu" and block.residual for block in conv.blocks)
    assert all(block.activation == "hard_swish" and not block.residual for block in inverted.blocks)
    assert all(block.expand_channels == 32 for block in inverted.blocks)  # timm ir always expands
    assert edge.blocks[0].kind == "fused" and edge.blocks[0].expand_channels == 32  # timm er e1 keeps its 1x1


def test_tf_noskip_and_expansion_one() -> None:
    ir = specdsl.loads(spec_text("automl", ["r2_k3_s1_e1_i32_o32_noskip", "r1_k3_s1_e1_i32_o32"]))
    assert [b.residual for b in ir.blocks] == [False, False, True]
    assert all(b.expand_channels is None for b in ir.blocks)  # tf: no expansion conv at e1


@pytest.mark.parametrize(
    ("dialect", "block", "message"),
    [
        ("automl", "r1_k3_s11_e1_i32_o16", "stride must be 1 digit"),
        ("tpu", "r1_k3_s1_e1_i32_o16", "stride must be 2 digit"),
        ("tpu", "r1_k3_s11_e6_i32_o16_c1", "MBConv without depthwise"),
        ("tpu", "r1_k3_s12_e6_i32_o16", "non-square"),
        ("automl", "ir_r1_k3_s1_e1_c16", "unknown option 'ir'"),
        ("timm", "r1_k3_s1_e1_i32_o16", "start with a block type"),
        ("timm", "ir_r1_k3_s1_e1_i32_o16", "unknown option 'i'"),
        ("automl", "r1_k3_s1_e1_i32_o16_skip", "unknown option 'skip'"),
        ("automl", "r1_k3.5_s1_e1_i32_o16", "timm dialect syntax"),
        ("timm", "er_r1_k3.5_s1_e4_c16", "mixed kernels are for depthwise convs"),
        ("timm", "ir_r1_k3.4_s1_e4_c16", "kernel must be odd"),
        ("timm", "ir_r1_k3_a3_s1_e4_c16", "1x1 kernels only"),
        ("timm", "ds_r1_k3_a1.1_s1_c16", "take no 'a'"),
        ("timm", "ir_r1_k3_s1_e4_c16_fc16", "take no 'fc'"),
        ("timm", "er_r1_k3_s1_e4_c16_cc4", "take no 'cc'"),
        ("timm", "ir_r1_k3.5_s1_e4_c16_cc4", "CondConv (cc) with mixed"),
        ("timm", "ir_r1_k3_s1_e4_c16_cc65", "exceeds the limit of 64"),
        ("timm", "ir_r1_k3.5.3.5.3.5.3.5.3.5.3.5.3.5.3.5.3_s1_e4_c16", "more than 16 kernels"),
        ("timm", "ir_r1_k3_s1_e4_c16_gs8", "group size"),
        ("timm", "ir_r1_k3_s1_e2_c16_nxx", "unknown activation"),
        ("automl", "r1_k4_s1_e1_i32_o16", "odd"),
        ("automl", "r1_k3_s3_e1_i32_o16", "stride must be 1 or 2"),
        ("automl", "r1_k3_s1_e1_i32_o16_se1.5", "exceeds"),
        ("automl", "r1_k3_s1_e1_i32_o16_se0", "SE ratio"),
        ("automl", "r0_k3_s1_e1_i32_o16", "at least 1"),
        ("automl", "r1_k3_s1_e0_i32_o16", "expansion must be >= 1"),
        ("automl", "r1_k3_s1_e1_i32", "missing required option 'o'"),
        ("automl", "r1_k3_s1_e1_i32_o16_o16", "given twice"),
        ("automl", "r1_k3_s1_e1_i32_o16_c1_se0.25", "single-conv"),
        ("automl", "r1-k3", "unexpected character"),
    ],
)
def test_invalid_block_strings(dialect: str, block: str, message: str) -> None:
    with pytest.raises(specdsl.SpecError) as caught:
        specdsl.loads(spec_text(dialect, [block]), "bad.spec")
    error = caught.value
    assert message in str(error)
    assert (error.path, error.line) == ("bad.spec", 6)
    assert error.column >= 5  # points into the block string
    assert block in str(error)


def test_error_column_points_at_the_option() -> None:
    with pytest.raises(specdsl.SpecError) as caught:
        specdsl.loads(spec_text("automl", ["r1_k3_s1_e1_i32_o16_zz9"]), "bad.spec")
    assert caught.value.column == 5 + len("r1_k3_s1_e1_i32_o16_")
