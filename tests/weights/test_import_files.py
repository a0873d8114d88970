"""`specdsl weights import|inspect` on files made here from the real libraries' models, as users download them.

Each source model has its BN affine parameters randomised and its statistics calibrated on image-like inputs
(tests/torch/helpers), so every tensor matters; the file is saved the way its library saves it, imported with
the format detected from its tensor names, and specdsl's torch model built from the import must give the
source model's logits within 1e-5 of the largest. Resolution 64 keeps it quick (shapes do not depend on it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
geffnet = pytest.importorskip("geffnet")
efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import specdsl  # noqa: E402
from specdsl import weights  # noqa: E402
from specdsl.api import at_resolution  # noqa: E402
from specdsl.backends.torch import build  # noqa: E402
from specdsl.interop.files import import_file, inspect_file  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402
from tests.conftest import listing, one_error_line, run_cli  # noqa: E402
from tests.torch.helpers import calibrate_batch_norm, images, reference_init  # noqa: E402

TOLERANCE = 1e-5  # max |ours - source| relative to the largest source logit
RESOLUTION = 64


def calibrated(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    reference_init(model, seed)
    calibrate_batch_norm(model, images(4, RESOLUTION, seed + 1))
    return model.eval()


def assert_same_logits(source: torch.nn.Module, state: dict[str, np.ndarray], spec: str) -> None:
    ir = at_resolution(specdsl.load(spec), RESOLUTION)
    x = images(2, RESOLUTION, seed=7)
    with torch.no_grad():
        expected = source(x).double().numpy()
        ours = build(ir, weights=state).eval()(x).double().numpy()
    scale = np.abs(expected).max()
    assert np.abs(expected[0] - expected[1]).max() > 100 * TOLERANCE * scale  # the input matters
    assert np.abs(ours - expected).max() <= TOLERANCE * scale


def save_torch(state: dict[str, torch.Tensor], path: Path, container: str) -> Path:
    if container == "safetensors":
        safetensors_torch.save_file({name: value.contiguous() for name, value in state.items()}, path)
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "model,spec,container",
    [
        ("tf_efficientnet_b0", "b0", "safetensors"),  # tf_: TF SAME padding and BN eps 1e-3, as b0.spec
        ("mixnet_s", "mixnet_s", "safetensors"),
        ("mobilenetv3_large_100", "mobilenetv3_large_100", "bin"),
    ],
)
def test_timm_files_import_with_the_source_logits(tmp_path: Path, model: str, spec: str, container: str) -> None:
    """gen-efficientnet 1.0.2 uses timm's names: its state dict saved as model.safetensors or pytorch_model.bin."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        source = calibrated(geffnet.create_model(model), seed=11)
    path = save_torch(source.state_dict(), tmp_path / f"model.{container}", container)
    state, metadata = import_file(specdsl.load(spec), path)
    assert metadata["source.format"] == "timm"
    assert_same_logits(source, state, spec)
    assert inspect_file(path)["fits"] == [spec]


def test_efficientnet_pytorch_pth_imports_with_the_source_logits(tmp_path: Path) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(3)
        source = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0", image_size=RESOLUTION)
    source = calibrated(source, seed=13)
    path = tmp_path / "efficientnet-b0-355c32eb.pth"
    torch.save(source.state_dict(), path)
    state, metadata = import_file(specdsl.load("b0"), path)
    assert metadata["source.format"] == "efficientnet-pytorch"
    assert_same_logits(source, state, "b0")
    assert inspect_file(path)["fits"] == ["b0"]


#: torchvision's EfficientNet configs as its source states them (torchvision/models/efficientnet.py,
#: `_efficientnet_conf`): (block, expand_ratio, kernel, stride, in, out, layers) per stage, before width/depth scaling.
TORCHVISION_CONFIGS = {
    "b0": [("mb", 1, 3, 1, 32, 16, 1), ("mb", 6, 3, 2, 16, 24, 2), ("mb", 6, 5, 2, 24, 40, 2),
           ("mb", 6, 3, 2, 40, 80, 3), ("mb", 6, 5, 1, 80, 112, 3), ("mb", 6, 5, 2, 112, 192, 4),
           ("mb", 6, 3, 1, 192, 320, 1)],
    "v2_s": [("fused", 1, 3, 1, 24, 24, 2), ("fused", 4, 3, 2, 24, 48, 4), ("fused", 4, 3, 2, 48, 64, 4),
             ("mb", 4, 3, 2, 64, 128, 6), ("mb", 6, 3, 1, 128, 160, 9), ("mb", 6, 3, 2, 160, 256, 15)],
}  # fmt: skip


def torchvision_names(spec: str) -> list[str]:
    """torchvision's state-dict keys in module order, from its published module tree: ``features.0`` the stem
    (Conv2dNormActivation: ``.0`` conv, ``.1`` BN), ``features.<stage>.<layer>.block.<i>`` the blocks, then the
    head conv and ``classifier.1``; an MBConv is [expand] + depthwise + SE (fc1, fc2) + project, a FusedMBConv
    [fused expand + project] or one conv."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]

    def conv_bn(prefix: str) -> list[str]:
        return [f"{prefix}.0.weight", *(f"{prefix}.1.{s}" for s in bn)]

    names = conv_bn("features.0")
    config = TORCHVISION_CONFIGS[spec]
    for stage, (kind, expand, _k, _s, _i, _o, layers) in enumerate(config, start=1):
        for layer in range(layers):
            units: list[str] = []
            if kind == "mb":
                units = (["conv"] if expand != 1 else []) + ["conv", "se", "conv"]
            else:
                units = ["conv", "conv"] if expand != 1 else ["conv"]
            for index, unit in enumerate(units):
                prefix = f"features.{stage}.{layer}.block.{index}"
                if unit == "se":
                    names += [f"{prefix}.{fc}.{part}" for fc in ("fc1", "fc2") for part in ("weight", "bias")]
                else:
                    names += conv_bn(prefix)
    return [*names, *conv_bn(f"features.{len(config) + 1}"), "classifier.1.weight", "classifier.1.bias"]


@pytest.mark.parametrize("spec", ["b0", "v2_s"])
def test_torchvision_state_dicts_import_exactly(tmp_path: Path, spec: str) -> None:
    """A torchvision-named state dict holding the lowering's canonical tensors (calibrated weights), paired in
    module order with torchvision's published names, imports back to the very same tensors (so the same logits)."""
    ir = at_resolution(specdsl.load(spec), RESOLUTION)
    model = calibrated(build(ir, seed=5), seed=17)
    canonical = weights.state_of(model)
    names = torchvision_names(spec)
    counters = [name for name in names if name.endswith("num_batches_tracked")]
    assert len(names) - len(counters) == len(canonical)
    values = iter(canonical.values())
    state = {name: torch.tensor(0) if name in counters else torch.from_numpy(next(values)) for name in names}
    path = tmp_path / f"efficientnet_{spec}.pth"
    torch.save(state, path)
    imported, metadata = import_file(specdsl.load(spec), path)
    assert metadata["source.format"] == "torchvision"
    assert imported.keys() == canonical.keys()
    assert all(np.array_equal(imported[name], canonical[name]) for name in canonical)
    assert inspect_file(path)["fits"] == [spec]


def test_cli_import_writes_canonical_weights_with_metadata(tmp_path: Path) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(3)
        source = geffnet.create_model("efficientnet_b0")
    path = save_torch(source.state_dict(), tmp_path / "model.safetensors", "safetensors")
    out = tmp_path / "out" / "b0.safetensors"
    done = run_cli("weights", "import", "b0", str(path), "-o", str(out))
    assert done.returncode == 0, done.stderr
    ir = specdsl.load("b0")
    written = weights.load(out, ir)
    assert written.keys() == weights.canonical_shapes(ir).keys()
    imported = weights.import_file(ir, path)  # the Python API reads what the CLI wrote
    assert all(np.array_equal(written[name], imported[name]) for name in written)
    from safetensors import safe_open

    with safe_open(out, "numpy") as f:
        metadata = f.metadata()
    assert metadata["source.format"] == "timm"
    assert metadata["network.sha256"] == lower(ir).sha256()
    assert json.loads(metadata["preprocessing.mean"]) == [0.485, 0.456, 0.406]
    import hashlib

    assert metadata["source.sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    before = listing(tmp_path)
    again = run_cli("weights", "import", "b0", str(path), "-o", str(out))
    assert again.returncode == 2 and "output exists" in one_error_line(again.stderr)
    assert listing(tmp_path) == before
    shown = run_cli("weights", "inspect", str(path), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["fits"] == ["b0"]
    assert json.loads(shown.stdout)["params"] == specdsl.analyze(ir).params


def test_another_network_is_one_line_naming_the_mismatched_tensors(tmp_path: Path) -> None:
    with torch.random.fork_rng():
        source = geffnet.create_model("efficientnet_b0")
    path = save_torch(source.state_dict(), tmp_path / "model.bin", "bin")
    before = listing(tmp_path)
    done = run_cli("weights", "import", "b1", str(path), "-o", str(tmp_path / "b1.safetensors"))
    line = one_error_line(done.stderr)
    assert done.returncode == 2
    assert "does not fit efficientnet-b1" in line and "'stages.0.1.spatial.conv.weight'" in line
    assert "more" in line  # the first few, then a count
    assert listing(tmp_path) == before


def test_another_class_count_needs_skip_head(tmp_path: Path) -> None:
    with torch.random.fork_rng():
        source = geffnet.create_model("efficientnet_b0", num_classes=10)
    path = save_torch(source.state_dict(), tmp_path / "model.safetensors", "safetensors")
    out = tmp_path / "b0.safetensors"
    done = run_cli("weights", "import", "b0", str(path), "-o", str(out))
    line = one_error_line(done.stderr)
    assert done.returncode == 2 and "classifier has 10 classes" in line
    assert done.stderr.splitlines()[-1] == "  hint: pass --skip-head to leave the classifier to the trainer"
    assert not out.exists()
    done = run_cli("weights", "import", "b0", str(path), "-o", str(out), "--skip-head")
    assert done.returncode == 0, done.stderr
    state = weights.load(out, specdsl.load("b0"))
    assert np.array_equal(state["stem.conv.weight"], source.conv_stem.weight.detach().numpy())
    assert state["classifier.weight"].shape == (1000, 1280)


def _plant(marker: str) -> str:
    Path(marker).write_text("ran")
    return marker


class Planted:
    """A pickled object whose unpickling would run `_plant`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _plant, (str(self.marker),)


@pytest.mark.parametrize("command", ["import", "inspect"])
def test_a_pickle_needing_more_than_weights_only_is_refused_unrun(tmp_path: Path, command: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "model.pth"
    torch.save({"conv_stem.weight": torch.zeros(1), "trap": Planted(marker)}, path)
    assert not marker.exists()
    before = listing(tmp_path)
    args = [command, str(path)]
    if command == "import":
        args = ["import", "b0", str(path), "-o", str(tmp_path / "b0.safetensors")]
    done = run_cli("weights", *args)
    line = one_error_line(done.stderr)
    assert done.returncode == 2 and "refused" in line and "weights_only" in line
    assert not marker.exists()
    assert listing(tmp_path) == before


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "not a weights file"),
        (b"hello, world", "not a weights file"),
        (b"PK\x03\x04garbage", "not a readable torch.save file"),
        (b"\x89HDF\r\n\x1a\ngarbage", "not a readable Keras HDF5"),
        ((20).to_bytes(8, "little") + b'{"a": 1}' + b" " * 12, "header entry lacks"),
        (None, "not a regular file"),
    ],
)
def test_damaged_files_are_one_line(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "model.bin"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    before = listing(tmp_path)
    done = run_cli("weights", "import", "b0", str(path), "-o", str(tmp_path / "b0.safetensors"))
    assert done.returncode == 2 and expected in one_error_line(done.stderr)
    assert listing(tmp_path) == before


def test_imported_files_and_emitted_models_carry_the_same_preprocessing(tmp_path: Path) -> None:
    """The preprocessing the weights expect: in the imported file's metadata, on the torch model and in the ONNX
    file's metadata_props, the same keys and values (`specdsl.weights.preprocessing`)."""
    onnx_backend = pytest.importorskip("specdsl.backends.onnx")
    from safetensors import safe_open

    with torch.random.fork_rng():
        source = geffnet.create_model("mixnet_s")
    path = save_torch(source.state_dict(), tmp_path / "model.safetensors", "safetensors")
    ir = specdsl.load("mixnet_s")
    out = tmp_path / "mixnet_s.safetensors"
    state, metadata = import_file(ir, path)
    weights.save(state, out, ir=ir, metadata=metadata)
    with safe_open(out, "numpy") as f:
        stored = {k: v for k, v in f.metadata().items() if k.startswith("preprocessing.")}
    assert stored == weights.preprocessing(lower(ir))
    assert json.loads(stored["preprocessing.mean"]) == list(ir.normalization.mean)
    assert stored["preprocessing.resolution"] == str(ir.resolution)
    assert build(ir, weights=out).preprocessing == stored
    small = specdsl.loads('extends = "specdsl:mixnet_s"\ninput { resolution = 64 }\n', "small.spec")
    props = onnx_backend.build(small).metadata_props
    assert {k: v for k, v in props.items() if k.startswith("preprocessing.")} == weights.preprocessing(lower(small))
