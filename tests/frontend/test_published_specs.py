"""Every shipped spec reproduces the published network: exact params, block counts, MACs."""

from __future__ import annotations

import json

import pytest

import specdsl
from specdsl.training.schedule import schedule_of
from tests.conftest import SPECS, run_cli
from tests.published import BLOCKS, GEFFNET, MACS, PARAMS, UNPUBLISHED, V1_TABLE, V1_TPU, V2_AUTOML, V2_TABLE


def test_every_variant_ships() -> None:
    shipped = {path.stem for path in SPECS.glob("*.spec")}
    assert shipped - UNPUBLISHED == set(PARAMS)


@pytest.mark.parametrize("variant", sorted(PARAMS))
def test_params_equal_published(variant: str) -> None:
    report = specdsl.analyze(specdsl.load(SPECS / f"{variant}.spec"))
    assert report.params == PARAMS[variant]
    assert sum(row.params for row in report.stages) + report.stem.params + report.head.params == report.params


@pytest.mark.parametrize("variant", sorted(BLOCKS))
def test_block_counts(variant: str) -> None:
    ir = specdsl.load(SPECS / f"{variant}.spec")
    assert len(ir.blocks) == BLOCKS[variant]


@pytest.mark.parametrize("variant", sorted(MACS))
def test_macs_within_half_percent(variant: str) -> None:
    report = specdsl.analyze(specdsl.load(SPECS / f"{variant}.spec"))
    assert report.macs == pytest.approx(MACS[variant], rel=0.005)


@pytest.mark.parametrize("variant", sorted(V1_TABLE))
def test_v1_variant_table(variant: str) -> None:
    width, depth, resolution, dropout = V1_TABLE[variant]
    ir = specdsl.load(SPECS / f"{variant}.spec")
    assert (ir.spec.scaling.width, ir.spec.scaling.depth, ir.resolution, ir.head.dropout) == (
        width,
        depth,
        resolution,
        dropout,
    )
    assert ir.spec.defaults.drop_path == 0.2
    assert ir.spec.scaling.round_up_90


@pytest.mark.parametrize("variant", sorted(V2_TABLE))
def test_v2_variant_table(variant: str) -> None:
    width, depth, train, evaluation, dropout = V2_TABLE[variant]
    ir = specdsl.load(SPECS / f"{variant}.spec")
    assert (ir.spec.scaling.width, ir.spec.scaling.depth) == (width, depth)
    assert (ir.train_resolution, ir.resolution, ir.head.dropout) == (train, evaluation, dropout)
    assert not ir.spec.scaling.round_up_90
    assert ir.training.progressive_stages == 4
    assert schedule_of(ir)[-1].image_size == train


def test_shipped_block_strings_are_the_published_ones() -> None:
    assert [stage.text for stage in specdsl.load(SPECS / "b0.spec").spec.stages] == V1_TPU
    for variant, published in V2_AUTOML.items():
        name = "v2_b0" if variant == "base" else f"v2_{variant}"
        assert [stage.text for stage in specdsl.load(SPECS / f"{name}.spec").spec.stages] == published.split()


def test_check_passes_on_all_specs() -> None:
    result = run_cli("check", *sorted(str(p) for p in SPECS.glob("*.spec")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == len(PARAMS) + len(UNPUBLISHED)


@pytest.mark.parametrize("variant", ["b0", "v2_l"])
def test_info_json_reports_published_params(variant: str) -> None:
    result = run_cli("info", str(SPECS / f"{variant}.spec"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["params"] == PARAMS[variant]
    assert report["blocks"] == len(specdsl.load(SPECS / f"{variant}.spec").blocks)


def test_v2_b3_needs_v2_rounding() -> None:
    """published.md: with the V1 90% rule V2-B3 would have 14,377,062 parameters."""
    ir = specdsl.load(SPECS / "v2_b3.spec")
    doc = ir.spec.model_copy(update={"scaling": ir.spec.scaling.model_copy(update={"round_up_90": True})})
    from specdsl.passes.resolve import resolve

    assert specdsl.analyze(resolve(doc)).params == 14_377_062


@pytest.mark.parametrize("variant", sorted(PARAMS))
def test_header_states_the_published_count(variant: str) -> None:
    header = (SPECS / f"{variant}.spec").read_text().split("\nname = ", 1)[0]
    assert f"Published: {PARAMS[variant]:,} trainable parameters" in " ".join(header.split())


@pytest.mark.parametrize("variant", sorted(GEFFNET))
def test_macs_equal_gen_efficientnets(variant: str) -> None:
    """Counted on geffnet's model with torch.utils.flop_counter (tests/torch/test_geffnet.py re-derives them)."""
    assert specdsl.analyze(specdsl.load(SPECS / f"{variant}.spec")).macs == GEFFNET[variant][1]
