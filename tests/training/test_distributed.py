"""Batch norm over two gloo ranks equals BatchNorm2d over the whole batch in one process: outputs, input and
affine gradients, running statistics."""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

from specdsl.training.distributed import CrossRankBatchNorm, synchronize_batch_norm  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _inputs() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 4, 3, generator=generator, dtype=torch.float64) * 3 + 1
    weights = torch.randn(6, 5, 4, 3, generator=generator, dtype=torch.float64)  # loss = sum(y * weights)
    state = {
        "weight": torch.rand(5, generator=generator, dtype=torch.float64) + 0.5,
        "bias": torch.randn(5, generator=generator, dtype=torch.float64),
        "running_mean": torch.randn(5, generator=generator, dtype=torch.float64),
        "running_var": torch.rand(5, generator=generator, dtype=torch.float64) + 0.5,
        "num_batches_tracked": torch.tensor(0),
    }
    return x, weights, state


def _step(norm: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = norm.train()(x)
    (y * weights).sum().backward()
    return {"y": y.detach(), "x.grad": x.grad, "weight.grad": norm.weight.grad, "bias.grad": norm.bias.grad,
            **{name: value for name, value in norm.state_dict().items()}}  # fmt: skip


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    try:
        x, weights, state = _inputs()
        rows = slice(0, 2) if rank == 0 else slice(2, 6)  # unequal shares: counts must be all-reduced too
        norm = synchronize_batch_norm(nn.Sequential(nn.BatchNorm2d(5, momentum=0.3).double()), torch.device("cpu"))
        assert isinstance(norm[0], CrossRankBatchNorm)
        norm[0].load_state_dict(state)
        result = _step(norm[0], x[rows], weights[rows])
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_normalise_like_one_process_over_the_whole_batch(tmp_path: Path) -> None:
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    x, weights, state = _inputs()
    norm = nn.BatchNorm2d(5, momentum=0.3).double()
    norm.load_state_dict(state)
    expected = _step(norm, x, weights)
    for key in ("y", "x.grad"):
        torch.testing.assert_close(torch.cat([ranks[0][key], ranks[1][key]]), expected[key], rtol=1e-12, atol=1e-12)
    for key in ("weight.grad", "bias.grad"):  # DDP sums the ranks' affine gradients (then averages every grad)
        torch.testing.assert_close(ranks[0][key] + ranks[1][key], expected[key], rtol=1e-12, atol=1e-12)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        for rank in ranks:
            torch.testing.assert_close(rank[key], expected[key], rtol=1e-12, atol=1e-12)
    assert expected["running_var"].sub(state["running_var"]).abs().max() > 0.1  # the statistics did move


def test_without_a_process_group_it_is_batch_norm() -> None:
    x, weights, state = _inputs()
    plain, crossed = nn.BatchNorm2d(5).double(), CrossRankBatchNorm(5).double()
    plain.load_state_dict(state)
    crossed.load_state_dict(state)
    expected, actual = _step(plain, x, weights), _step(crossed, x, weights)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=0)
