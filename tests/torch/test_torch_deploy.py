"""Inference and training options: BN folding, torch.export, memory-efficient (recomputing) training."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from torch import nn  # noqa: E402

from specdsl.backends.torch import build  # noqa: E402

from .helpers import images, load_ir, randomize_batch_norm, relative_error  # noqa: E402


@pytest.mark.parametrize("name", ["b0", "v2_b0"])
def test_folding_batch_norm_keeps_the_outputs(name: str) -> None:
    ir = load_ir(name)
    model = build(ir, seed=4).eval()
    randomize_batch_norm(model, seed=5)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    x = images(2, ir.resolution, seed=6)
    with torch.no_grad():
        expected = model(x)
        fused = model.fuse()
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        assert relative_error(fused(x), expected) <= 1e-5
        # deploy=True is the same fold, straight from the builder.
        deployed = build(ir, weights=state, deploy=True)
        assert not deployed.training
        assert relative_error(deployed(x), expected) <= 1e-5


def test_torch_export_matches_eager() -> None:
    ir = load_ir("b0")
    model = build(ir, seed=1).eval()
    randomize_batch_norm(model, seed=2)
    x = images(1, ir.resolution, seed=3)
    program = torch.export.export(model, (x,))
    # Static padding: the graph pads with constants and never reads the input size.
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("sym_size" in target for target in targets)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), rtol=1e-5, atol=1e-6)
    # The fused (deploy) export is checked through emit(..., deploy=True, export="pt2") in test_torch_emit.


def _train_step(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One forward/backward in train mode from a fixed RNG state; returns saved-for-backward bytes, grads, state."""
    saved: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.untyped_storage().nbytes())
        return tensor

    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(0)  # same drop-path masks in both runs
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            out = model(x)
        out.square().mean().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return sum(saved), grads, {k: v.clone() for k, v in model.state_dict().items()}


def test_memory_efficient_training_recomputes_without_changing_the_step() -> None:
    ir = load_ir("b0")
    x = images(4, 64, seed=7)
    plain_bytes, plain_grads, plain_state = _train_step(build(ir, seed=8), x)
    lean_bytes, lean_grads, lean_state = _train_step(build(ir, seed=8, memory_efficient=True), x)
    assert any(block.drop_path > 0 for block in ir.blocks)  # stochastic depth is active in both runs
    # Same gradients, and running stats updated exactly once (recomputation does not count twice).
    assert all(torch.equal(plain_grads[name], lean_grads[name]) for name in plain_grads)
    assert all(torch.equal(plain_state[name], lean_state[name]) for name in plain_state)
    # Far fewer activations held for backward.
    assert lean_bytes < plain_bytes / 3


def test_memory_efficient_model_still_exports() -> None:
    ir = load_ir("v2_b0")
    model = build(ir, seed=0, memory_efficient=True).eval()
    x = images(1, ir.resolution, seed=1)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), rtol=1e-5, atol=1e-6)
