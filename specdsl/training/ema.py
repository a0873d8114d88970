"""The exponential moving average of the weights that google/automl evaluates with.

As ``tf.train.ExponentialMovingAverage(decay, num_updates=global_step)``: after optimizer step n the
average moves by ``1 - d`` with ``d = min(decay, (1 + n) / (10 + n))``, so early averages are not
dominated by the random init. It covers every canonical tensor, batch-norm running statistics included
(automl averages moving_mean and moving_variance too), so the averaged state is itself a loadable model.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """Float copies of a model's canonical state, updated after each optimizer step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {name: value.detach().clone() for name, value in _floating(model).items()}

    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        current = _floating(model)
        with torch.no_grad():
            averages = list(self.state.values())
            torch._foreach_lerp_(averages, [current[name].detach() for name in self.state], 1.0 - decay)

    def load_into(self, model: nn.Module) -> None:
        """Copy the averages into ``model`` (same names)."""
        with torch.no_grad():
            for name, value in _floating(model).items():
                value.copy_(self.state[name])


def _floating(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and floating buffers by canonical name (BN batch counters are left out)."""
    return {name: value for name, value in model.state_dict(keep_vars=True).items() if value.is_floating_point()}
