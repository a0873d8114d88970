"""The console script as a user meets it: help, info, fmt, schema, and a fast, framework-free import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import specdsl
from specdsl.training.schedule import schedule_of
from tests.conftest import COMMANDS, SPECS, run_cli


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command: str | None) -> None:
    result = run_cli(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "usage: specdsl" in result.stdout


def test_info_table_lists_every_stage() -> None:
    result = run_cli("info", str(SPECS / "b0.spec"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "efficientnet-b0 @ 224px"
    assert sum(line.startswith("stage ") for line in lines) == 7
    assert "5,288,548" in next(line for line in lines if line.startswith("total"))


def test_info_at_another_resolution_and_batch() -> None:
    ir = specdsl.load(SPECS / "b0.spec")
    small = specdsl.analyze(ir, resolution=112)
    assert small.params == specdsl.analyze(ir).params
    assert small.macs < specdsl.analyze(ir).macs / 3
    assert specdsl.analyze(ir, batch_size=8).activation_bytes == 8 * specdsl.analyze(ir).activation_bytes
    half = specdsl.analyze(ir, dtype="float16")
    assert half.activation_bytes * 2 == specdsl.analyze(ir).activation_bytes
    result = run_cli("info", str(SPECS / "b0.spec"), "--json", "--resolution", "112")
    assert json.loads(result.stdout)["macs"] == small.macs


def test_info_layers_prints_the_lowered_network() -> None:
    ir = specdsl.load(SPECS / "b0.spec")
    net = specdsl.lower(ir)
    text = run_cli("info", "b0", "--layers")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert any(line.split()[:3] == ["stages.1.0.spatial.conv", "conv", "3x3/2"] for line in lines)
    assert any(line.split()[:2] == ["stages.1.1.add", "add"] for line in lines)
    data = json.loads(run_cli("info", "b0", "--layers", "--json", "--resolution", "112").stdout)
    assert [row["name"] for row in data["layers"]] == [op.name for op in net.ops]
    assert sum(row["params"] for row in data["layers"]) == data["params"] == 5_288_548
    assert sum(row["macs"] for row in data["layers"]) == data["macs"]
    assert data["layers"][0]["shape"] == [32, 56, 56]  # at the flag's resolution, not the spec's


def test_info_schedule_shows_progressive_learning() -> None:
    """V2-S, paper Table 6: size by google/automl's int(128 + 172 * k/4); RandAugment 5 -> 15 and dropout
    0.1 -> 0.3 by linspace, so the first stage trains at the minimum and the last at the maximum."""
    result = run_cli("info", str(SPECS / "v2_s.spec"), "--schedule")
    assert result.returncode == 0, result.stderr
    schedule = result.stdout.split("training schedule")[1].splitlines()
    assert "dropout: paper" in schedule[0]
    rows = [line.split() for line in schedule[3:]]
    assert [row[1] for row in rows] == ["0-87", "87-175", "175-262", "262-350"]
    assert [row[2] for row in rows] == ["171", "214", "257", "300"]
    assert [row[3] for row in rows] == ["5", "8.333", "11.67", "15"]
    assert [row[5] for row in rows] == ["0.1", "0.1667", "0.2333", "0.3"]
    data = json.loads(run_cli("info", "v2_s", "--schedule", "--json").stdout)
    assert [stage["image_size"] for stage in data["schedule"]] == [171, 214, 257, 300]


def test_fmt_is_canonical_and_keeps_comments(tmp_path: Path) -> None:
    messy = tmp_path / "messy.spec"
    messy.write_text(
        '# my net\ndialect=automl\nname =   "messy"\nstem{channels=16 kernel=3}\n'
        "input {resolution=64   # small\n}\nstages{\n# first\nr1_k3_s1_e1_i16_o16_c1}\n"
    )
    result = run_cli("fmt", str(messy))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        '# my net\nname = "messy"\ndialect = automl\n\ninput {\n    resolution = 64  # small\n}\n\n'
        "stem {\n    channels = 16\n    kernel = 3\n}\n\nstages {\n    # first\n    r1_k3_s1_e1_i16_o16_c1\n}\n"
    )
    assert run_cli("fmt", "--check", str(messy)).returncode == 2
    assert run_cli("fmt", "-w", str(messy)).returncode == 0
    assert run_cli("fmt", "--check", str(messy)).returncode == 0
    assert specdsl.load(messy).name == "messy"


def test_fmt_check_on_shipped_specs() -> None:
    result = run_cli("fmt", "--check", *sorted(str(p) for p in SPECS.glob("*.spec")))
    assert result.returncode == 0, result.stderr


def test_schema_is_json_schema() -> None:
    result = run_cli("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "ModelIR"
    assert {"stem", "stages", "head", "spec"} <= set(schema["properties"])
    document = json.loads(run_cli("schema", "--document").stdout)
    assert document["title"] == "SpecDocument"


def test_import_is_fast_and_framework_free() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import specdsl; specdsl.load('specs/b0.spec'); "
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'onnx', 'numpy') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=SPECS.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_module_entry_point_matches_console_script() -> None:
    result = subprocess.run(["specdsl", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"specdsl {specdsl.__version__}"


def test_list_and_load_by_name(tmp_path: Path) -> None:
    result = run_cli("list", "--json")
    assert result.returncode == 0, result.stderr
    listed = {row["spec"]: row for row in json.loads(result.stdout)}
    assert set(listed) == {p.stem for p in SPECS.glob("*.spec")}
    assert listed["v2_l"]["params"] == 118_515_272 and listed["v2_l"]["family"] == "efficientnetv2"
    assert isinstance(listed["v2_l"]["macs"], int)  # numbers as numbers
    assert listed["mixnet_s"]["macs"] == specdsl.analyze(specdsl.load("mixnet_s")).macs
    assert specdsl.load("b3").network() == specdsl.load(SPECS / "b3.spec").network()
    assert run_cli("info", "v2_s").stdout.startswith("efficientnetv2-s @ 384px")
    custom = tmp_path / "mine.spec"
    custom.write_text('extends = "specdsl:b0"\nname = "mine"\nhead { classes = 10 }\n')
    ir = specdsl.load(custom)
    assert (ir.name, ir.head.classes, len(ir.blocks)) == ("mine", 10, 16)
    custom.write_text('extends = "specdsl:b99"\n')
    with pytest.raises(specdsl.SpecError, match="no shipped spec 'b99'"):
        specdsl.load(custom)


def test_info_plot_draws_every_stage(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    out = tmp_path / "b0.svg"
    result = run_cli("info", str(SPECS / "b0.spec"), "--plot", str(out))
    assert result.returncode == 0, result.stderr
    svg = ET.parse(out).getroot()
    namespace = "{http://www.w3.org/2000/svg}"
    titles = [rect.find(f"{namespace}title").text for rect in svg.iter(f"{namespace}rect")]
    report = specdsl.analyze(specdsl.load(SPECS / "b0.spec"))
    rows = [report.stem, *report.stages, report.head]
    assert titles == [f"{r.name}: {r.params:,}" for r in rows] + [f"{r.name}: {r.macs:,}" for r in rows]


def test_info_json_schedule() -> None:
    result = run_cli("info", "v2_s", "--json", "--schedule")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    ir = specdsl.load("v2_s")
    assert report["schedule"] == [stage.to_json() for stage in schedule_of(ir)]
    assert [row["image_size"] for row in report["schedule"]] == [171, 214, 257, 300]
    assert report["params"] == 21_458_488 and isinstance(report["macs"], int)
    assert "schedule" not in json.loads(run_cli("info", "v2_s", "--json").stdout)


def test_every_table_has_json(tmp_path: Path) -> None:
    checked = json.loads(run_cli("check", "--json", "b0", "b9").stdout)
    macs = specdsl.analyze(specdsl.load("b0")).macs
    assert checked[0] == {"spec": "b0", "ok": True, "name": "efficientnet-b0", "dialect": "tpu", "resolution": 224,
                          "blocks": 16, "params": 5_288_548, "macs": macs}  # fmt: skip
    assert checked[1]["ok"] is False and "no shipped spec 'b9'" in checked[1]["error"]["message"]
    scaled = json.loads(run_cli("scale", "b0", "--phi", "1", "--json").stdout)
    assert scaled["base"]["params"] == 5_288_548 and scaled["scaled"]["params"] > 5_288_548
    assert specdsl.loads(scaled["spec"]).name == "efficientnet-b0-scaled"  # no -o: the spec is in the JSON
    assert {"": "blocks", "base": 16, "scaled": scaled["scaled"]["blocks"]} in scaled["comparison"]
    out = tmp_path / "b1ish.spec"
    written = json.loads(run_cli("scale", "b0", "--phi", "1", "--json", "-o", str(out)).stdout)
    assert written["written"] == str(out) and "spec" not in written and out.exists()


def test_scale_reads_a_spec_on_stdin() -> None:
    text = (SPECS / "b0.spec").read_text()
    for args in (["scale", "--phi", "1"], ["scale", "-", "--phi", "1"]):
        result = run_cli(*args, input=text)
        assert result.returncode == 0, result.stderr
        assert specdsl.loads(result.stdout).spec.scaling.width == pytest.approx(1.1)
        assert "Base: efficientnet-b0" in result.stdout


def test_scale_without_a_spec_names_the_shipped_ones() -> None:
    result = run_cli("scale", "--phi", "3", input="")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "error: no SPEC given: name a spec file or a shipped spec, or pipe a spec on stdin"
    assert lines[1].startswith("  hint: shipped specs (`specdsl list`): b0, b1,") and "v2_s" in lines[1]
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr


def test_list_groups_the_library_by_family() -> None:
    from specdsl.frontend.loader import library_families

    families = library_families()
    names = [name for members in families.values() for name in members]
    assert sorted(names) == sorted(p.stem for p in SPECS.glob("*.spec"))  # each shipped spec exactly once
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line in families]
    assert headers == list(families)
    mixnet = result.stdout.split("\nmixnet\n")[1].split("\n\n")[0]
    assert [line.split()[0] for line in mixnet.splitlines()[2:]] == families["mixnet"]
