"""Optimizers of the recipe: TensorFlow's RMSProp (written here), SGD and AdamW (PyTorch's), with weight decay
on the tensors the lowering names (`specdsl.passes.regularisation.decayed_tensors`: kernels, not biases or
batch-norm parameters, as google/automl)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from specdsl.passes.lower import LoweredNetwork
from specdsl.passes.regularisation import decayed_tensors
from specdsl.spec import TrainingRecipe


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow 1 (``tf.train.RMSPropOptimizer``) and google/automl train with it.

    Per parameter, with gradient ``g`` (plus ``weight_decay * p``, an L2 term in the loss)::

        ms  = decay * ms + (1 - decay) * g^2          ms starts at 1, not 0
        mom = momentum * mom + lr * g / sqrt(ms + eps)  epsilon inside the square root; lr inside the momentum
        p   = p - mom

    PyTorch's RMSprop differs on all three: ms starts at 0 (huge first steps), eps is added outside the
    square root, and lr multiplies the momentum buffer instead of each gradient.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict],
        lr: float = 0.0,
        decay: float = 0.9,
        momentum: float = 0.9,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if group["weight_decay"]:
                    grad = grad.add(param, alpha=group["weight_decay"])
                state = self.state[param]
                if not state:
                    state["square_avg"] = torch.ones_like(param, memory_format=torch.preserve_format)
                    state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                square_avg, buffer = state["square_avg"], state["momentum_buffer"]
                square_avg.mul_(group["decay"]).addcmul_(grad, grad, value=1.0 - group["decay"])
                buffer.mul_(group["momentum"]).addcdiv_(grad, square_avg.add(group["eps"]).sqrt_(), value=group["lr"])
                param.sub_(buffer)
        return loss


def build_optimizer(
    model: nn.Module, net: LoweredNetwork, recipe: TrainingRecipe, lr_scales: Mapping[str, float] | None = None
) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``model``'s parameters (canonical names), learning rate set per step later.

    With ``lr_scales`` (fine-tuning: the trainable parameters' learning-rate multipliers, `finetune.Tuning`), only
    the parameters it names are optimised, grouped by multiplier (``lr_scale`` in each group)."""
    decayed = decayed_tensors(net)
    named = list(model.named_parameters())
    groups = [
        {"params": [p for name, p in named if name in decayed], "weight_decay": recipe.weight_decay},
        {"params": [p for name, p in named if name not in decayed], "weight_decay": 0.0},
    ]
    if lr_scales is not None:
        keys = sorted({(name in decayed, scale) for name, scale in lr_scales.items()}, key=lambda k: (-k[0], -k[1]))
        groups = [
            {
                "params": [p for name, p in named if lr_scales.get(name) == scale and (name in decayed) == decay],
                "weight_decay": recipe.weight_decay if decay else 0.0,
                "lr_scale": scale,
            }
            for decay, scale in keys
        ]
    if recipe.optimizer == "rmsprop_tf":
        return RMSpropTF(groups, decay=recipe.rmsprop_decay, momentum=recipe.momentum, eps=recipe.epsilon)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=recipe.momentum)
    return torch.optim.AdamW(groups, lr=0.0, betas=(recipe.momentum, 0.999), eps=recipe.epsilon)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
