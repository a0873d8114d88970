"""One process or many: the process group from torchrun's environment, and batch norm over all ranks.

``torchrun --nproc-per-node N`` (and ``--nnodes``) sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
address; `Context.from_environment` joins that group (gloo on CPU, nccl on CUDA). Batch-norm statistics
must cover the global batch, or N processes train a different network than one: on CUDA the BNs become
``nn.SyncBatchNorm``; on CPU, where SyncBatchNorm refuses to run, they become `CrossRankBatchNorm`, which
all-reduces the per-channel statistics in forward and the matching sums in backward.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from specdsl.training.environment import torchrun_environment


@dataclass(frozen=True)
class Context:
    """Where this process sits: rank 0 of 1 without torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The one writer of checkpoints, metrics and the progress bar."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str | None = None, *, join: bool = True) -> Context:
        """Join torchrun's process group when WORLD_SIZE > 1; pick the device (cuda:LOCAL_RANK if available).

        ``join=False``: one process on its own even under torchrun (``specdsl grid`` trains a different
        network on each rank), still on ``cuda:LOCAL_RANK`` when no device is given.
        """
        environment = torchrun_environment()  # every variable checked before a process group is joined
        world_size = environment.world_size if join else 1
        rank = environment.rank if join else 0
        local_rank = environment.local_rank
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        chosen = torch.device(device)
        if chosen.type == "cuda" and chosen.index is None:
            chosen = torch.device("cuda", local_rank)
            torch.cuda.set_device(chosen)
        if world_size > 1 and not dist.is_initialized():
            backend = "nccl" if chosen.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        return cls(rank, world_size, local_rank, chosen)

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def replica_difference(self, model: nn.Module) -> float:
        """The largest |difference| between any rank's weights (parameters and BN statistics) and rank 0's.

        DDP keeps replicas equal by construction; this checks it, once per epoch, at the cost of one
        broadcast of the state. 0.0 on one process.
        """
        if not self.distributed:
            return 0.0
        largest = torch.zeros((), dtype=torch.float64, device=self.device)
        for value in model.state_dict().values():
            if value.is_floating_point():
                reference = value.detach().clone()
                dist.broadcast(reference, src=0)
                largest = torch.maximum(largest, (value.detach() - reference).abs().max().double())
        dist.all_reduce(largest, op=dist.ReduceOp.MAX)
        return largest.item()

    def mean(self, value: float) -> float:
        """The mean of a per-rank number over all ranks."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.item() / self.world_size


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(tensor)
    return tensor


class _CrossRankNorm(torch.autograd.Function):
    """Normalise with statistics over every rank's batch; backward all-reduces the two sums dx needs.

    For the global loss L (the mean of the ranks' losses, which DDP's gradient averaging optimises):
    dx = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), the means over all ranks' elements. The
    affine gradients stay local; DDP averages them with every other parameter.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = (0, 2, 3)
        dtype = x.dtype
        x = x.to(torch.promote_types(dtype, torch.float32))  # float32 at least, as BatchNorm2d under autocast
        local = torch.cat([x.sum(dims, dtype=torch.float64), x.new_tensor([x.numel() // x.shape[1]]).double()])
        sums = _all_reduce(local)
        total = sums[-1].item()
        mean = sums[:-1] / total
        centred = x - mean.to(x.dtype).reshape(1, -1, 1, 1)
        var = _all_reduce(centred.pow(2).sum(dims, dtype=torch.float64)) / total
        invstd = torch.rsqrt(var + eps).to(x.dtype)
        xhat = centred * invstd.reshape(1, -1, 1, 1)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.total, ctx.dtype = total, dtype
        out = (xhat * weight.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)).to(dtype)
        mean, var = mean.to(x.dtype), var.to(x.dtype)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var, total

    @staticmethod
    def backward(ctx, grad_out, _mean, _var, _total):
        xhat, weight, invstd = ctx.saved_tensors
        dims = (0, 2, 3)
        grad_out = grad_out.to(xhat.dtype)
        grad_bias = grad_out.sum(dims)
        grad_weight = (grad_out * xhat).sum(dims)
        sums = _all_reduce(torch.cat([grad_bias, grad_weight]).double()) / ctx.total
        mean_dy, mean_dy_xhat = (part.to(xhat.dtype).reshape(1, -1, 1, 1) for part in sums.chunk(2))
        grad_x = (grad_out - mean_dy - xhat * mean_dy_xhat) * (weight * invstd).reshape(1, -1, 1, 1)
        return grad_x.to(ctx.dtype), grad_weight.to(weight.dtype), grad_bias.to(weight.dtype), None


class CrossRankBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics cover all ranks (CPU/gloo), named and loaded like the original.

    Running statistics get the global batch mean and the unbiased global variance, as BatchNorm2d
    updates them for one process holding the whole batch. Eval mode, and training without a process
    group, is plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        out, mean, var, total = _CrossRankNorm.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            momentum = self.momentum
            self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            self.running_var.mul_(1 - momentum).add_(var.detach() * (total / max(total - 1, 1)), alpha=momentum)
            self.num_batches_tracked.add_(1)
        return out


def synchronize_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d -> a cross-rank one under the same name and with the same state (in place)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, module in list(model.named_modules()):
        if type(module) is nn.BatchNorm2d:
            replacement = CrossRankBatchNorm(module.num_features, module.eps, module.momentum)
            replacement = replacement.to(device=device, dtype=module.weight.dtype)
            replacement.load_state_dict(module.state_dict())
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name), attr, replacement)
    return model
