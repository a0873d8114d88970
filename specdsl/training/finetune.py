"""Fine-tuning: ``train --init WEIGHTS`` (with the classifier rebuilt for the data's class count), ``--freeze
stages.N``, ``--freeze-bn`` and ``--lr-decay F``.

What a run was started from is part of its resolved spec (``spec.spec``'s header names the file's sha256, the
rebuilt head and the freezing), so ``--resume`` must be given the same flags and a resumed run is the same run.
Frozen parameters are left out of the optimizer (no gradient, no weight decay) and their BN layers stay in
inference mode (statistics frozen); the EMA of a constant is that constant, so they stay bit-identical.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from specdsl.errors import SpecError
from specdsl.ir import ModelIR
from specdsl.passes.resolve import resolve
from specdsl.training.recipe import run_spec_text

_FREEZE = re.compile(r"stages\.([0-9]{1,4})")


@dataclass(frozen=True)
class Tuning:
    """How a run departs from training from scratch; ``state`` is the init (canonical names) to load."""

    init: str | None = None
    freeze: int | None = None  # stem and stages 0..freeze
    freeze_bn: bool = False
    lr_decay: float | None = None
    state: Mapping[str, np.ndarray] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    stages: int = 0  # the network's stage count (for --lr-decay)

    def frozen(self, name: str) -> bool:
        """Whether the canonical tensor or module ``name`` is frozen by ``--freeze``."""
        if self.freeze is None:
            return False
        if name.startswith("stem."):
            return True
        match = re.match(r"stages\.([0-9]+)\.", name)
        return match is not None and int(match.group(1)) <= self.freeze

    def lr_scale(self, name: str) -> float:
        """Layer-wise decay: 1 for the head, F for the last stage, ... F**(stages + 1) for the stem."""
        if self.lr_decay is None:
            return 1.0
        match = re.match(r"stages\.([0-9]+)\.", name)
        last = self.stages - 1
        depth = last - int(match.group(1)) + 1 if match else (last + 2 if name.startswith("stem.") else 0)
        return float(self.lr_decay**depth)

    def apply(self, model: Any) -> dict[str, float] | None:
        """Load the init into ``model`` (a torch module with canonical names), stop the frozen parameters'
        gradients; the trainable parameters' learning-rate multipliers for the optimizer."""
        import torch

        with torch.no_grad():
            for name, value in model.state_dict().items():
                if name in self.state:
                    value.copy_(torch.from_numpy(np.ascontiguousarray(self.state[name])))
        scales = {}
        for name, param in model.named_parameters():
            if self.frozen(name):
                param.requires_grad_(False)
            else:
                scales[name] = self.lr_scale(name)
        return scales

    def freeze_statistics(self, model: Any) -> None:
        """Put the frozen BN layers (every one with ``--freeze-bn``) in inference mode: their statistics stay."""
        from torch.nn.modules.batchnorm import _BatchNorm

        for name, module in model.named_modules():
            if isinstance(module, _BatchNorm) and (self.freeze_bn or self.frozen(f"{name}.")):
                module.eval()


def check_flags(init: object, freeze: object, freeze_bn: object, lr_decay: object) -> None:
    """The fine-tuning options in range, named by their flags (framework-free)."""
    if init is not None and not isinstance(init, str | Path):
        raise SpecError(f"expected a weights file path, got {init!r}", path="--init")
    if freeze is not None and not (isinstance(freeze, str) and _FREEZE.fullmatch(freeze)):
        raise SpecError(
            f"expected stages.N (freeze the stem and stages 0..N), got {str(freeze)[:40]!r}", path="--freeze"
        )
    if not isinstance(freeze_bn, bool):
        raise SpecError(f"expected True or False, got {freeze_bn!r}", path="--freeze-bn")
    if lr_decay is not None and not (type(lr_decay) in (int, float) and 0 < lr_decay <= 1):
        raise SpecError(f"expected a factor in (0, 1], got {lr_decay!r}", path="--lr-decay")


def prepare(
    ir: ModelIR, classes: int, *, init: str | None, freeze: str | None, freeze_bn: bool, lr_decay: float | None
) -> tuple[ModelIR, Tuning | None]:
    """The network to train (its classifier rebuilt for ``classes`` when an init is given and its class count
    differs) and the tuning; None when the run trains from scratch as before."""
    if init is None and freeze is None and not freeze_bn and lr_decay is None:
        return ir, None
    stages = len(ir.stages)
    depth = None if freeze is None else int(freeze.split(".")[1])
    if depth is not None and depth >= stages:
        raise SpecError(f"{ir.name} has stages 0..{stages - 1}", path=f"--freeze {freeze}")
    notes = []
    state: dict[str, np.ndarray] = {}
    if init is not None:
        if classes != ir.head.classes:
            notes.append(f"classifier rebuilt for {classes} classes (the spec has {ir.head.classes})")
            head = ir.spec.head.model_copy(update={"classes": classes})
            ir = resolve(ir.spec.model_copy(update={"head": head}))
        state, note = _read_init(ir, init)
        notes.append(note)
    tuning = Tuning(init, depth, freeze_bn, lr_decay, state, tuple(notes), stages)
    return ir, tuning


def _read_init(ir: ModelIR, path: str) -> tuple[dict[str, np.ndarray], str]:
    from specdsl.interop._common import HeadMismatch
    from specdsl.interop.files import detect, read_tensors, sha256_of, to_canonical
    from specdsl.weights import WeightsError

    label = f"--init {path}"
    try:
        container, tensors = read_tensors(path)
        format = detect(container, list(tensors), label)
        try:
            state = to_canonical(ir, tensors, format, label=label)
            head = "loaded"
        except HeadMismatch:
            state = to_canonical(ir, tensors, format, label=label, skip_head=True)
            state = {name: value for name, value in state.items() if not name.startswith("classifier.")}
            head = "left to its init (the file's has another class count)"
        digest = sha256_of(path)
    except WeightsError as error:
        raise SpecError(str(error)) from None
    except OSError as error:
        raise SpecError(f"cannot read: {error.strerror or error}", path=label) from None
    return state, f"initialised from {Path(path).name} ({format} format, sha256 {digest}); classifier {head}"


def spec_text(ir: ModelIR, tuning: Tuning | None) -> str:
    """The run's resolved spec, with what it was fine-tuned from and how in its header."""
    if tuning is None:
        return run_spec_text(ir)
    flags = [f"--freeze stages.{tuning.freeze}" if tuning.freeze is not None else "",
             "--freeze-bn" if tuning.freeze_bn else "",
             f"--lr-decay {tuning.lr_decay:g}" if tuning.lr_decay is not None else ""]  # fmt: skip
    notes = [f"fine-tuning: {note}" for note in tuning.notes]
    if any(flags):
        notes.append(f"fine-tuning flags: {' '.join(flag for flag in flags if flag)}")
    return run_spec_text(ir, notes)


def say(tuning: Tuning | None, quiet: bool) -> None:
    if tuning is not None and not quiet:
        for note in tuning.notes:
            print(f"fine-tuning: {note}", file=sys.stderr)
