"""The emitted standalone module: torch only, ruff-clean, bit-identical to specdsl.build with the same weights."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from specdsl import weights  # noqa: E402
from specdsl.backends.naming import file_stem  # noqa: E402
from specdsl.backends.torch import build, emit  # noqa: E402
from specdsl.backends.torch.emit import class_name  # noqa: E402

from .helpers import images, load_ir, randomize_batch_norm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter (-I: no PYTHONPATH, no cwd on sys.path) where importing specdsl or
# safetensors raises, so the emitted module can only be using torch.
CHILD = textwrap.dedent(
    """
    import importlib.abc
    import sys
    from pathlib import Path


    class Forbid(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("specdsl", "safetensors"):
                raise ImportError(f"the standalone module imported {name}")
            return None


    sys.meta_path.insert(0, Forbid())
    out_dir = Path(sys.argv[1])
    sys.path.insert(0, str(out_dir))
    import torch

    module = __import__(sys.argv[2])
    model = module.load_model()
    x = module.read_safetensors(out_dir / "input.safetensors")["x"]
    with torch.no_grad():
        y = model(x)
    (out_dir / "output.bin").write_bytes(y.numpy().tobytes())
    assert not [m for m in sys.modules if m.split(".")[0] in ("specdsl", "safetensors")]
    """
)


def import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"emitted_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def emitted_b0(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """b0 emitted with non-trivial weights (random BN statistics), plus those weights."""
    ir = load_ir("b0")
    model = build(ir, seed=12)
    randomize_batch_norm(model, seed=13)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    out_dir = tmp_path_factory.mktemp("emit")
    paths = emit(ir, out_dir, weights=state)
    assert [p.name for p in paths] == ["efficientnet_b0.py", "efficientnet_b0.safetensors"]
    return out_dir, state


def test_emitted_weights_are_the_canonical_file(emitted_b0: tuple[Path, dict[str, torch.Tensor]]) -> None:
    out_dir, state = emitted_b0
    loaded = weights.load(out_dir / "efficientnet_b0.safetensors", load_ir("b0"))
    assert all(torch.equal(torch.from_numpy(loaded[name]), state[name]) for name in state)


def test_standalone_module_needs_only_torch_and_is_bit_identical(
    emitted_b0: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    out_dir, state = emitted_b0
    ir = load_ir("b0")
    x = images(2, ir.resolution, seed=14)
    safetensors_torch.save_file({"x": x}, str(out_dir / "input.safetensors"))
    result = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, str(out_dir), "efficientnet_b0"],
        capture_output=True,
        text=True,
        cwd=out_dir,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    standalone = torch.frombuffer(bytearray((out_dir / "output.bin").read_bytes()), dtype=torch.float32)
    with torch.no_grad():
        expected = build(ir, weights=state).eval()(x)
    assert torch.equal(standalone.reshape(expected.shape), expected)


def test_standalone_init_and_deploy_match_build(emitted_b0: tuple[Path, dict[str, torch.Tensor]]) -> None:
    out_dir, _ = emitted_b0
    module = import_file(out_dir / "efficientnet_b0.py")
    ir = load_ir("b0")
    assert module.SEED == 0 and module.DEPLOY is False
    assert module.load_model(None).preprocessing == build(ir, seed=0).preprocessing  # what the weights expect
    assert isinstance(module.EfficientnetB0(), module.EfficientNet)
    # weights=None: the reference rule drawn from SEED by the layers' reset_parameters (torch's stream; build(seed=)
    # assigns specdsl.weights.initial, numpy's: tests/test_one_init.py holds the two rules equal).
    built = build(ir, seed=0)
    built.reset_parameters(0)
    fresh, built = module.load_model(None).state_dict(), built.state_dict()
    assert list(fresh) == list(built) and all(torch.equal(fresh[k], built[k]) for k in built)
    x = images(1, ir.resolution, seed=15)
    with torch.no_grad():
        expected = build(ir, weights=out_dir / "efficientnet_b0.safetensors", deploy=True)(x)
        assert torch.equal(module.load_model(deploy=True)(x), expected)


def test_emitted_source_is_ruff_clean(emitted_b0: tuple[Path, dict[str, torch.Tensor]]) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    source = emitted_b0[0] / "efficientnet_b0.py"
    config = str(ROOT / "pyproject.toml")
    for command in (
        [ruff, "check", "--config", config, str(source)],
        [ruff, "format", "--check", "--config", config, str(source)],
    ):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {name.split(".")[0] for name in imported} - set(sys.stdlib_module_names) == {"torch"}


def test_emit_deploy_with_pt2_export(tmp_path: Path) -> None:
    ir = load_ir("v2_b0")
    paths = emit(ir, tmp_path, seed=3, deploy=True, export="pt2")
    assert [p.name for p in paths] == ["efficientnetv2_b0.py", "efficientnetv2_b0.safetensors", "efficientnetv2_b0.pt2"]
    module = import_file(tmp_path / "efficientnetv2_b0.py")
    assert module.DEPLOY is True and module.SEED == 3
    program = torch.export.load(tmp_path / "efficientnetv2_b0.pt2")
    x = images(1, ir.resolution, seed=4)
    with torch.no_grad():
        eager = build(ir, seed=3, deploy=True)(x)
        assert torch.allclose(program.module()(x), eager, rtol=1e-5, atol=1e-6)
        assert torch.equal(module.load_model()(x), eager)
    # The weights file stays canonical (unfused), whatever deploy says.
    assert set(weights.load(paths[1], ir)) == set(weights.canonical_shapes(ir))


def test_emit_rejects_unknown_exports(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pt2"):
        emit(load_ir("b0"), tmp_path, export="onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "name,module,cls",
    [
        ("efficientnet-b0", "efficientnet_b0", "EfficientnetB0"),
        ("efficientnetv2-s", "efficientnetv2_s", "Efficientnetv2S"),
        ("2x wide/net", "model_2x_wide_net", "Model2xWideNet"),
        ("EfficientNet", "efficientnet", "EfficientNetModel"),  # would shadow the layers' class
        ("class", "class_", "Class"),
        ("---", "model", "Model"),
    ],
)
def test_names_are_sanitized(name: str, module: str, cls: str) -> None:
    assert file_stem(name) == module and module.isidentifier()
    assert class_name(name) == cls and cls.isidentifier()


def test_emitted_module_runs_the_family_ops(tmp_path: Path) -> None:
    """cond_conv, slice and concat are in the copied layers too: the standalone file computes what build does."""
    import specdsl
    from tests.strategies import EVERY_FAMILY_FEATURE

    ir = specdsl.loads(EVERY_FAMILY_FEATURE, "every.spec")
    emit(ir, tmp_path, seed=5)
    module = import_file(tmp_path / "every_feature.py")
    assert {op["op"] for op in module.NETWORK["ops"]} >= {"cond_conv", "slice", "concat"}
    x = images(2, ir.resolution, seed=6)
    with torch.no_grad():
        assert torch.equal(module.load_model()(x), build(ir, seed=5).eval()(x))
        assert torch.equal(module.load_model(deploy=True)(x), build(ir, seed=5, deploy=True)(x))
