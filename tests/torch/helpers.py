"""Shared helpers for the PyTorch backend tests: IRs from the shipped specs, randomized BN statistics."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import specdsl
from specdsl.ir import Block, ModelIR

SPECS = Path(__file__).resolve().parents[2] / "specs"
SPEC_NAMES = sorted(path.stem for path in SPECS.glob("*.spec"))


@functools.cache
def load_ir(name: str) -> ModelIR:
    """The IR of specs/<name>.spec (parsed once per session)."""
    return specdsl.load(SPECS / f"{name}.spec")


@pytest.fixture(autouse=True)
def flush_denormals() -> Iterator[None]:
    """Random networks produce subnormal activations, several times slower on CPU; both sides see the same mode.

    Autouse in the modules that import it.
    """
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)  # torch's default


def randomize_batch_norm(model: torch.nn.Module, seed: int) -> None:
    """Give every BN non-trivial affine parameters and running statistics, so BN handling is actually tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                shape = module.weight.shape
                module.weight.copy_(torch.rand(shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(shape, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)


def images(count: int, size: int, seed: int, channels: int = 3) -> torch.Tensor:
    """Image-like inputs: smooth random structure plus noise.

    Pure i.i.d. noise makes every input look alike after global pooling, so logits would hardly
    depend on the input and a comparison of two networks would prove little.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(count, channels, 6, 6, generator=generator)
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return smooth + 0.3 * torch.randn(count, channels, size, size, generator=generator)


def reference_init(model: torch.nn.Module, seed: int) -> None:
    """Independent of the backend: TF-style conv init and random BN affine parameters, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                module.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1, generator=generator)
            elif isinstance(module, torch.nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)


def calibrate_batch_norm(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Set every BN's running statistics to the batch statistics of ``x`` (one train-mode pass), then eval.

    Random weights with random running stats decay the signal to nothing within a few blocks;
    calibrated stats keep activations normalized, so logits depend strongly on the input. The pass draws
    drop-path and dropout masks from a fixed seed, so the statistics do not depend on the tests run before.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        for norm in norms:
            norm.momentum = 1.0
        model.train()
        model(x)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


def map_blocks(ir: ModelIR, change: Callable[[Block], Block], **fields: object) -> ModelIR:
    """A copy of ``ir`` with every block passed through ``change`` and top-level ``fields`` replaced."""
    stages = [stage.model_copy(update={"blocks": [change(b) for b in stage.blocks]}) for stage in ir.stages]
    return ir.model_copy(update={"stages": stages, **fields})


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()
