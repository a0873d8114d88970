"""A run's resumable state on disk: safetensors tensors and JSON, never pickle.

``RUN_DIR/checkpoint/`` is replaced as a whole after every epoch (written to a sibling, then renamed):

* ``weights.safetensors`` and ``ema.safetensors``: canonical weights (`specdsl.weights.save`), loadable
  by every backend and by ``specdsl build --weights``;
* ``state.safetensors``: the optimizer's per-parameter tensors under their canonical names
  (``optimizer.<param>.<key>``) and every rank's RNG states (``rng.<rank>.torch`` ...);
* ``state.json``: epoch, optimizer step (the learning rate is a function of it), best accuracy, EMA update
  count, the optimizer's hyper-parameters, and the numpy and Python RNG states of every rank.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from specdsl import weights as canonical
from specdsl.cli.files import publish_permissions
from specdsl.ir import ModelIR

FORMAT = "specdsl-train-checkpoint/1"


@dataclass
class Progress:
    """Where a run stands after a completed epoch."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best_accuracy: float = -1.0
    best_epoch: int = -1
    ema_updates: int = 0


@dataclass
class RngState:
    """One rank's random state: torch (CPU, CUDA), the augmentation generator, numpy and Python."""

    torch_cpu: torch.Tensor
    augment: torch.Tensor
    numpy: dict[str, Any]
    python: list[Any]
    cuda: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def capture(cls, augment: torch.Generator) -> RngState:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return cls(
            torch.random.get_rng_state(),
            augment.get_state(),
            {"kind": kind, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
            _jsonable(random.getstate()),
            cuda,
        )

    def restore(self, augment: torch.Generator) -> None:
        torch.random.set_rng_state(self.torch_cpu)
        augment.set_state(self.augment)
        n = self.numpy
        np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        version, internal, gauss = self.python
        random.setstate((version, tuple(internal), gauss))
        if self.cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.cuda)


def _jsonable(value: Any) -> Any:
    return [_jsonable(item) for item in value] if isinstance(value, tuple | list) else value


def _optimizer_parts(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict, dict]:
    """(tensors by canonical parameter name, JSON for the rest) of ``optimizer.state_dict()``."""
    state = optimizer.state_dict()
    order = [names[id(param)] for group in optimizer.param_groups for param in group["params"]]
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{order[index]}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{order[index]}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "order": order, "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    order = meta["order"]
    state: dict[int, dict[str, Any]] = {}
    for index, name in enumerate(order):
        prefix = f"optimizer.{name}."
        entries = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
        entries |= {key[len(name) + 1 :]: v for key, v in meta["scalars"].items() if key.startswith(name + ".")}
        if entries:
            state[index] = entries
    return {"state": state, "param_groups": meta["param_groups"]}


def save(
    directory: Path,
    *,
    ir: ModelIR,
    model: nn.Module,
    ema_state: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    rng: list[RngState],
) -> None:
    """Write the checkpoint of a completed epoch; readers see the previous one or this one, never half."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=directory.parent))
    try:
        canonical.save(model, staging / "weights.safetensors", ir=ir)
        if ema_state is not None:
            canonical.save(ema_state, staging / "ema.safetensors", ir=ir)
        names = {id(param): name for name, param in model.named_parameters()}
        tensors, optimizer_meta = _optimizer_parts(optimizer, names)
        python_state = []
        for rank, state in enumerate(rng):
            tensors[f"rng.{rank}.torch"] = state.torch_cpu
            tensors[f"rng.{rank}.augment"] = state.augment
            for device, cuda in enumerate(state.cuda):
                tensors[f"rng.{rank}.cuda.{device}"] = cuda
            python_state.append({"numpy": state.numpy, "python": state.python, "cuda_devices": len(state.cuda)})
        save_file(tensors, str(staging / "state.safetensors"), metadata={"format": FORMAT})
        meta = {"format": FORMAT, "progress": asdict(progress), "optimizer": optimizer_meta, "rng": python_state}
        (staging / "state.json").write_text(json.dumps(meta, indent=1) + "\n")
        publish_permissions(staging)
        _replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace(staging: Path, directory: Path) -> None:
    if directory.exists():
        retired = Path(tempfile.mkdtemp(prefix=".checkpoint.old.", dir=directory.parent))
        os.replace(directory, retired / "checkpoint")
        os.replace(staging, directory)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, directory)


@dataclass
class Loaded:
    progress: Progress
    weights: dict[str, np.ndarray]
    ema: dict[str, np.ndarray] | None
    optimizer_state: dict
    rng: list[RngState]


def load(directory: Path, ir: ModelIR) -> Loaded:
    meta = json.loads((directory / "state.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{directory}: not a specdsl training checkpoint ({meta.get('format')!r})")
    tensors = load_file(str(directory / "state.safetensors"))
    rng = []
    for rank, extra in enumerate(meta["rng"]):
        cuda = [tensors[f"rng.{rank}.cuda.{device}"] for device in range(extra["cuda_devices"])]
        torch_cpu, augment = tensors[f"rng.{rank}.torch"], tensors[f"rng.{rank}.augment"]
        rng.append(RngState(torch_cpu, augment, extra["numpy"], extra["python"], cuda))
    ema_path = directory / "ema.safetensors"
    return Loaded(
        Progress(**meta["progress"]),
        canonical.load(directory / "weights.safetensors", ir),
        canonical.load(ema_path, ir) if ema_path.exists() else None,
        _optimizer_state(tensors, meta["optimizer"]),
        rng,
    )
