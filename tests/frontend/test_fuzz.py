"""Property tests: mutated specs never raise anything but SpecError; valid ones round-trip."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specdsl
from specdsl.frontend.format import format_raw, render_document
from specdsl.frontend.syntax import parse_text
from tests.conftest import SPECS

SEEDS = [
    (SPECS / name).read_text()
    for name in ("b0.spec", "v2_s.spec", "v2_b0.spec", "mixnet_s.spec", "mobilenetv3_large_100.spec", "es.spec")
]
ALPHABET = st.sampled_from([*'abcdeiknorsx_0123456789.{}=[]#"-> \n,', "\t", "é"])
TOKENS = st.sampled_from(
    ["r0", "r1000000000", "k4", "s3", "s11", "e0", "se0", "se2", "c1", "c7", "noskip", "skip", "ir_", "_", "1e309",
     "nan", "-1", "99999999999999999999", "none", "true", "[", "]", "->", '"', "{", "}", "extends", "stages",
     "k3.5.7", "a1.1", "p1.1.1", "cc4", "cc0", "fc24", "k3.4", ", ", "pool_conv", "expanded", "hard_sigmoid"]
)  # fmt: skip


@st.composite
def mutated_spec(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "token"]))
        if action == "insert":
            text = text[:position] + draw(st.text(ALPHABET, min_size=1, max_size=6)) + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 12)) :]
        elif action == "replace":
            text = text[:position] + draw(st.text(ALPHABET, min_size=1, max_size=4)) + text[position + 4 :]
        else:
            text = text[:position] + draw(TOKENS) + text[position:]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_spec())
def test_mutations_raise_only_spec_errors(text: str) -> None:
    try:
        ir = specdsl.loads(text, "fuzz.spec")
    except specdsl.SpecError as error:
        assert error.line is None or error.line >= 1
        assert str(error).startswith("fuzz.spec")
        return
    # whatever survived mutation is a valid network that analyses and formats
    specdsl.analyze(ir)
    assert specdsl.loads(format_raw(parse_text(text, "fuzz.spec")), "fmt.spec").network() == ir.network()


block_fields = st.fixed_dictionaries(
    {
        "r": st.integers(1, 4),
        "k": st.sampled_from([1, 3, 5, 7]),
        "s": st.sampled_from([1, 2]),
        "e": st.sampled_from([1, 2, 4, 6]),
        "o": st.integers(1, 64),
        "se": st.one_of(st.none(), st.sampled_from([0.0625, 0.25, 0.5, 1.0])),
        "fused": st.booleans(),
        "noskip": st.booleans(),
    }
)


@settings(max_examples=150, deadline=None)
@given(st.lists(block_fields, min_size=1, max_size=5), st.integers(8, 48), st.sampled_from([64, 96, 128]))
def test_generated_automl_specs_resolve_and_round_trip(blocks: list[dict], stem: int, resolution: int) -> None:
    lines, previous = [], stem
    for b in blocks:
        if b["fused"] and b["e"] == 1:
            b["se"] = None  # not representable (see dialects.py)
        text = f"r{b['r']}_k{b['k']}_s{b['s']}_e{b['e']}_i{previous}_o{b['o']}"
        text += f"_se{b['se']}" if b["se"] else ""
        text += "_c1" if b["fused"] else ""
        text += "_noskip" if b["noskip"] else ""
        lines.append(text)
        previous = b["o"]
    spec = (
        f'name = "gen"\ndialect = automl\ninput {{ resolution = {resolution} }}\nstem {{ channels = {stem} }}\n'
        "stages {\n" + "\n".join(lines) + "\n}\n"
    )
    ir = specdsl.loads(spec, "gen.spec")
    assert len(ir.blocks) == sum(b["r"] for b in blocks)
    for block in ir.blocks:
        assert block.residual == (block.stride == 1 and block.in_channels == block.out_channels
                                  and not blocks[block.stage]["noskip"])  # fmt: skip
    # canonical text and JSON both round-trip to the same IR
    assert specdsl.loads(render_document(ir.spec), "again.spec").network() == ir.network()
    assert type(ir).model_validate_json(ir.model_dump_json()) == ir


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.spec")), ids=lambda p: p.stem)
def test_shipped_specs_round_trip(path) -> None:
    ir = specdsl.load(path)
    assert type(ir).model_validate_json(ir.model_dump_json()) == ir
    assert specdsl.loads(render_document(ir.spec), "rendered.spec").network() == ir.network()
    assert format_raw(parse_text(path.read_text(), str(path))) == path.read_text()  # shipped specs are canonical
