"""The MBConv family in the language: timm block options, `[a, b]` stages, depth rules, SE and head keys."""

from __future__ import annotations

import pytest

import specdsl
from specdsl.passes.scaling import spread_repeats
from tests.conftest import SPECS, run_cli


def timm_spec(stages: str, extra: str = "", stem: int = 16) -> str:
    return (
        f'name = "f"\ndialect = timm\ninput {{ resolution = 64 }}\nstem {{ channels = {stem} }}\n'
        f"stages {{\n{stages}\n}}\n{extra}"
    )


def test_mixnet_block_strings_decode_as_gen_efficientnet_reads_them() -> None:
    ir = specdsl.loads(timm_spec("    ir_r1_k3.5.7_a1.1_p1.1_s2_e6_c40_se0.5_nsw\n    ir_r1_k3_s1_e4_c40_cc4"))
    mixed, cond = ir.blocks
    assert (mixed.kernel, mixed.mixed_kernels, mixed.spatial_kernels) == (3, (3, 5, 7), (3, 5, 7))
    assert (mixed.expand_groups, mixed.project_groups, mixed.activation) == (2, 2, "silu")
    assert (cond.mixed_kernels, cond.spatial_kernels, cond.experts) == (None, (3,), 4)


def test_groups_are_one_stage() -> None:
    ir = specdsl.load(SPECS / "mobilenetv3_large_100.spec")
    assert [len(stage.blocks) for stage in ir.stages] == [1, 2, 3, 4, 2, 3, 1]
    stage = ir.stages[3]
    assert [(b.index, b.stride, b.expand_channels) for b in stage.blocks] == [(0, 2, 240), (1, 1, 200), (2, 1, 184),
                                                                              (3, 1, 184)]  # fmt: skip
    assert [len(lines) for lines in ir.spec.stage_lines()] == [1, 2, 1, 3, 1, 1, 1]


def test_only_the_first_line_of_a_stage_strides() -> None:
    text = timm_spec("    [ir_r1_k3_s2_e4_c24, ir_r1_k3_s2_e4_c24]")
    with pytest.raises(specdsl.SpecError, match="only a stage's first block strides") as caught:
        specdsl.loads(text, "bad.spec")
    assert (caught.value.line, caught.value.column) == (6, 26)


def test_fmt_keeps_a_group_on_one_line(tmp_path) -> None:
    path = tmp_path / "g.spec"
    path.write_text(timm_spec("    [ir_r1_k3_s2_e4_c24,\n     ir_r2_k3_s1_e4_c24]\n    cn_r1_k1_s1_c64"))
    result = run_cli("fmt", str(path))
    assert result.returncode == 0, result.stderr
    assert "    [ir_r1_k3_s2_e4_c24, ir_r2_k3_s1_e4_c24]\n    cn_r1_k1_s1_c64\n" in result.stdout


def test_scaled_spec_keeps_its_groups() -> None:
    """`scale` writes a standalone spec; a grouped stage is still one stage there (same network on re-parse)."""
    base = specdsl.load("mixnet_m")
    scaled = specdsl.scale(base, phi=1)
    from specdsl.frontend.format import render_document

    text = render_document(scaled.spec)
    assert "[ir_r1_k3.5.7_a1.1_p1.1_s2_e6_c32, ir_r1_k3_a1.1_p1.1_s1_e3_c32]" in text
    assert specdsl.loads(text).network() == scaled.network()


@pytest.mark.parametrize(
    ("repeats", "depth", "trunc", "expected"),
    [
        ([1, 3], 1.2, "round", [1, 4]),  # MixNet-XL stage 2: 4 -> round(4.8) = 5, the last line grows first
        ([1, 1, 2], 1.2, "ceil", [1, 2, 2]),  # 5 blocks: round(2.5) = 2 for the last line, round(1.5) = 2 next
        ([1, 1, 2], 1.4, "ceil", [1, 2, 3]),
        ([3], 0.5, "round", [2]),  # round half to even, as Python (and timm) round
        ([1], 0.3, "round", [1]),  # never below one block
        ([2], 1.1, "ceil", [3]),  # one line: ceil(depth * r), EfficientNet's rule
    ],
)
def test_depth_spreads_over_a_stage_as_timm(repeats: list[int], depth: float, trunc: str, expected: list[int]) -> None:
    assert spread_repeats(repeats, depth, trunc) == expected


def test_fix_first_last_keeps_those_stages() -> None:
    lite4 = specdsl.load("lite4")
    assert [len(stage.blocks) for stage in lite4.stages] == [1, 4, 4, 6, 6, 8, 1]  # ceil(1.8 r) inside only
    assert lite4.stem.out_channels == 32 and lite4.head.conv_channels == 1280  # scale_stem/head = false


def test_se_width_rules() -> None:
    mbv3 = specdsl.load("mobilenetv3_large_100")
    se = [(b.mid_channels, b.se_channels) for b in mbv3.blocks if b.se_channels]
    assert se[:3] == [(72, 24), (120, 32), (120, 32)]  # make_divisible(mid / 4, 8): 18 -> 24, 30 -> 32
    assert {(b.se_gate, b.se_activation) for b in mbv3.blocks} == {("hard_sigmoid", "relu")}
    mixnet = specdsl.load("mixnet_s")
    assert mixnet.blocks[3].se_channels == 12  # from the block input: 24 * 0.5


def test_fc_forces_the_expansion_input() -> None:
    es = specdsl.load("es")
    first = es.blocks[0]
    assert (first.in_channels, first.expand_channels) == (32, 96)  # fc24: 24 * 4, not 32 * 4
    assert [b.stride_at for b in es.blocks if b.kind == "fused" and b.stride == 2] == ["project", "project"]


def test_experts_multiplier() -> None:
    assert {b.experts for b in specdsl.load("cc_b0_8e").blocks} == {None, 8}
    assert {b.experts for b in specdsl.load("cc_b0_4e").blocks} == {None, 4}


def test_head_forms_and_hard_sigmoid() -> None:
    ir = specdsl.loads(
        timm_spec(
            "    ir_r1_k3_s1_e2_c16",
            "head { channels = 32 form = pool_conv bias = true activation = hard_sigmoid }\n"
            "defaults { activation = hard_sigmoid }\n",
        )
    )
    assert (ir.head.form, ir.head.bias, ir.head.activation, ir.blocks[0].activation) == (
        "pool_conv",
        True,
        "hard_sigmoid",
        "hard_sigmoid",
    )


@pytest.mark.parametrize(
    ("stages", "extra", "message"),
    [
        ("    ir_r1_k3_s1_e2_c16_se0.25", "defaults { se_divisor = 8 }\n", "se_divisor rounds expanded-width SE only"),
        ("    ir_r1_k3_s1_e2_c16", "head { channels = none bias = true }\n", "with channels = none there is none"),
        ("    ir_r1_k3_s1_e2_c16\n    ir_r1_k3_s1_e2_c16",
         "scaling { fix_first_last = true stage_depth = [2.0, 1.0] }\n", "fix_first_last keeps"),
        ("    [ir_r1_k3_s1_e2_c16, ir_r1_k3_s1_e2_c16]", "scaling { stage_depth = [1.0, 1.0] }\n",
         "2 entries for 1 stages"),
        ("    ir_r1_k3_s1_e2_c16_cc40", "scaling { experts_multiplier = 2 }\n", "80 CondConv experts; the limit is 64"),
        ("    ds_r1_k3.5.7_s1_c8", "stem { channels = 2 }\nscaling { divisor = 1 }\n",
         "split into 3 groups but has 2 channels"),
    ],
)  # fmt: skip
def test_family_errors_are_located(stages: str, extra: str, message: str) -> None:
    text = timm_spec(stages, extra)
    if "stem { channels = 2 }" in extra:
        text = text.replace("stem { channels = 16 }\n", "")
    with pytest.raises(specdsl.SpecError, match=message) as caught:
        specdsl.loads(text, "bad.spec")
    assert caught.value.path == "bad.spec" and caught.value.line > 1
