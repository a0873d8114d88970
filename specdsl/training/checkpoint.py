"""A run's resumable state on disk: safetensors tensors and JSON, never pickle.

``RUN_DIR/checkpoint/`` is replaced as a whole after every epoch (written to a sibling, then renamed):

* ``weights.safetensors`` and ``ema.safetensors``: canonical weights (`specdsl.weights.save`), loadable
  by every backend and by ``specdsl build --weights``;
* ``state.safetensors``: the optimizer's per-parameter tensors under their canonical names
  (``optimizer.<param>.<key>``) and every rank's RNG states (``rng.<rank>.torch`` ...);
* ``state.json``: epoch, optimizer step (the learning rate is a function of it), best accuracy, EMA update
  count, the optimizer's hyper-parameters, the numpy and Python RNG states of every rank, and the SHA-256
  of every other state file (the checkpoint's, ``metrics.jsonl`` and ``best.*``) and of itself.

`load` is the one reader of a run's state: every file is validated (state.json against a schema; each
safetensors file's header, exact tensor names, shapes, dtypes and finite values; the digests), so a
damaged run is one diagnostic naming the file, never a traceback or a silently different resumed run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import save_file
from torch import nn

from specdsl import weights as canonical
from specdsl.errors import SpecError
from specdsl.ir import ModelIR
from specdsl.output.files import os_errors_as_cannot_write, publish_permissions
from specdsl.training.rundir import (
    BEST_JSON,
    BEST_WEIGHTS,
    CHECKPOINT_FILES,
    METRICS_FILE,
    TEXT_LIMIT,
    damaged,
    read_state,
    write_atomic,
)

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


def saved_param_groups(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> list[dict[str, Any]]:
    """The optimizer's param_groups as a checkpoint records them (JSON: tuples are lists)."""
    return json.loads(json.dumps(_optimizer_parts(optimizer, names)[1]["param_groups"]))


def without_lr(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """param_groups less the learning rate, which the schedule sets before every step."""
    return [{key: value for key, value in group.items() if key != "lr"} for group in groups]


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


@dataclass
class Loaded:
    progress: Progress
    weights: dict[str, np.ndarray]
    ema: dict[str, np.ndarray] | None
    optimizer_state: dict
    rng: list[RngState]
    param_groups: list[dict[str, Any]] = field(default_factory=list)  # as saved (JSON), for the trainer to check


#: The run's best weights and their summary: outputs in RUN_DIR, and a copy in each checkpoint (a resumed run
#: restores RUN_DIR's from it, so an epoch cut short after writing a new best never leaves them ahead).
BEST_FILES = (BEST_JSON, BEST_WEIGHTS)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _self_digest(meta: dict[str, Any]) -> str:
    """The digest state.json records of its own content (every key but ``digest``)."""
    return _sha256(json.dumps({k: v for k, v in meta.items() if k != "digest"}, sort_keys=True).encode())


def metrics_prefix(data: bytes, epochs: int) -> bytes | None:
    """The first ``epochs`` lines of ``metrics.jsonl`` (those a checkpoint covers); None if it has fewer."""
    lines = data.splitlines(keepends=True)
    if len(lines) < epochs or not all(line.endswith(b"\n") for line in lines[:epochs]):
        return None
    return b"".join(lines[:epochs])


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
    """Write the checkpoint of a completed epoch; readers see the previous one or this one, never half. An OS
    failure (full disk, read-only) is ``cannot write DIRECTORY: reason`` and leaves the previous one."""
    run_dir = directory.parent
    staging: Path | None = None
    with os_errors_as_cannot_write(directory, run_dir):
        try:
            staging = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=run_dir))
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
            for name in BEST_FILES:
                if (run_dir / name).is_file():
                    _link_or_copy(run_dir / name, staging / name)
            files = {f"{directory.name}/{path.name}": _sha256(path.read_bytes()) for path in sorted(staging.iterdir())}
            metrics = (run_dir / METRICS_FILE).read_bytes() if (run_dir / METRICS_FILE).is_file() else b""
            files[METRICS_FILE] = _sha256(metrics_prefix(metrics, progress.epoch) or b"")
            meta = {"format": FORMAT, "progress": asdict(progress), "optimizer": optimizer_meta, "rng": python_state}
            meta["files"] = files
            meta["digest"] = _self_digest(meta)
            (staging / "state.json").write_text(json.dumps(meta, indent=1) + "\n")
            publish_permissions(staging)
            _replace(staging, directory)
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise


def _link_or_copy(source: Path, target: Path) -> None:
    """A second name for a file the trainer only ever replaces by renaming (no copy where links work)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def restore_best(directory: Path) -> None:
    """RUN_DIR's best.* as the checkpoint recorded them (an epoch cut short may have written newer ones)."""
    for name in BEST_FILES:
        saved, published = directory / name, directory.parent / name
        if not saved.exists():
            with os_errors_as_cannot_write(published, published.parent):
                published.unlink(missing_ok=True)
        elif not published.is_file() or published.read_bytes() != saved.read_bytes():
            write_atomic(published, lambda path, saved=saved: shutil.copyfile(saved, path))


def _replace(staging: Path, directory: Path) -> None:
    if os.path.lexists(directory):
        retired = Path(tempfile.mkdtemp(prefix=".checkpoint.old.", dir=directory.parent))
        os.replace(directory, retired / "checkpoint")  # a symlink is moved itself, its target untouched
        os.replace(staging, directory)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, directory)


# ---------------------------------------------------------------------------------------------- reading

_Strict = ConfigDict(extra="forbid", allow_inf_nan=False)
_Word = Annotated[int, Field(ge=0, lt=2**32)]


class _ProgressFile(BaseModel):
    model_config = _Strict

    epoch: int = Field(ge=0)
    step: int = Field(ge=0)
    best_accuracy: float = Field(ge=-1.0, le=1.0)
    best_epoch: int = Field(ge=-1)
    ema_updates: int = Field(ge=0)


class _NumpyRng(BaseModel):
    model_config = _Strict

    kind: Literal["MT19937"]
    keys: list[_Word] = Field(min_length=624, max_length=624)
    pos: int = Field(ge=0, le=624)
    has_gauss: int = Field(ge=0, le=1)
    gauss: float


class _RankRng(BaseModel):
    model_config = _Strict

    numpy: _NumpyRng
    python: tuple[Literal[3], Annotated[list[_Word], Field(min_length=625, max_length=625)], float | None]
    cuda_devices: int = Field(ge=0, le=1024)


class _OptimizerMeta(BaseModel):
    model_config = _Strict

    param_groups: list[dict[str, Any]] = Field(min_length=1)
    order: list[str]
    scalars: dict[str, int | float | bool | None]


class _StateFile(BaseModel):
    model_config = _Strict

    format: Literal["specdsl-train-checkpoint/1"]
    progress: _ProgressFile
    optimizer: _OptimizerMeta
    rng: list[_RankRng] = Field(min_length=1, max_length=100_000)
    files: dict[str, str]
    digest: str


class BestFile(BaseModel):
    """best.json: the best epoch's held-out evaluation, and what `specdsl predict` reads of the run."""

    model_config = ConfigDict(allow_inf_nan=False)

    epoch: int = Field(ge=0)
    accuracy: float = Field(ge=0.0, le=1.0)
    loss: float
    predictions: list[int]
    classes: list[str] = []  # absent from runs before `specdsl predict`
    center_crop: bool | None = None


def _schema_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where + ': ' if where else ''}{first['msg']}"


def _read_json(path: Path, schema: type[BaseModel], problem: Callable[[Path, str], SpecError] = damaged) -> BaseModel:
    data = read_state(path, TEXT_LIMIT, problem)
    try:
        return schema.model_validate_json(data)
    except ValidationError as error:
        raise problem(path, f"not the trainer's {path.name} ({_schema_error(error)})") from None


def read_best(path: Path, problem: Callable[[Path, str], SpecError]) -> BestFile:
    """A run's best.json, checked; ``problem`` words the error for the command reading it."""
    best = _read_json(path, BestFile, problem)
    assert isinstance(best, BestFile)
    return best


def _tensors(path: Path, limit: int) -> dict[str, Any]:
    """A safetensors file's tensors (at most ``limit`` bytes): the header parsed, every floating value finite."""
    from safetensors.numpy import load

    data = read_state(path, limit)
    try:
        tensors = load(data)
    except Exception as error:  # the parser's error types (SafetensorError, ValueError...): a damaged file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise damaged(path, f"not a readable safetensors file ({reason})") from None
    for name, value in tensors.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise damaged(path, f"'{name}' holds NaN or infinity")
    return tensors


def _size_limit(shapes: dict[str, tuple[int, ...]], *, per_parameter: int = 1, ranks: int = 0) -> int:
    """Bytes a safetensors file of float32 ``shapes`` (``per_parameter`` tensors each) and ``ranks`` RNG states
    can take, with room for its header: a larger file is not the trainer's, and is not read."""
    return 4 * per_parameter * sum(math.prod(shape) for shape in shapes.values()) + 65_536 * ranks + 2**24


def _weights(path: Path, ir: ModelIR) -> dict[str, np.ndarray]:
    """Canonical weights, through `specdsl.weights.load` (the one reader: header, exact names and shapes, float
    dtypes, finite values, BN variances); a damaged file says so in the run's terms."""
    read_state(path)  # missing, not a regular file: the run's wording
    try:
        return canonical.load(path, ir)
    except canonical.WeightsError as error:
        text, prefix = str(error), f"weights in {path}"
        reason = text[len(prefix) + 2 :] if text.startswith(prefix + ": ") else text.replace(prefix, "its weights", 1)
        raise damaged(path, reason) from None


def _state_tensors(path: Path, meta: _StateFile, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """state.safetensors: the optimizer's per-parameter tensors and each rank's RNG states, nothing else."""
    tensors = _tensors(path, _size_limit(shapes, per_parameter=4, ranks=len(meta.rng)))
    rng_size = tuple(torch.random.get_rng_state().shape)
    expected = {}
    for rank, extra in enumerate(meta.rng):
        expected |= {f"rng.{rank}.torch": rng_size, f"rng.{rank}.augment": rng_size}
        expected |= {f"rng.{rank}.cuda.{device}": None for device in range(extra.cuda_devices)}
    order = set(meta.optimizer.order)
    if order - set(shapes):
        raise damaged(path.with_name("state.json"), f"optimizer.order names '{sorted(order - set(shapes))[0]}'")
    keys: dict[str, set[str]] = {}
    for name, value in tensors.items():
        if name in expected:
            size = expected[name]
            if value.dtype != np.uint8 or value.ndim != 1 or (size is not None and value.shape != size):
                raise damaged(path, f"'{name}' is {value.dtype}{list(value.shape)}, not a random generator's state")
            continue
        parameter, _, key = name.removeprefix("optimizer.").rpartition(".")
        if not name.startswith("optimizer.") or parameter not in order:
            raise damaged(path, f"holds '{name}', which is neither an optimizer's nor a random generator's state")
        if value.shape not in (shapes[parameter], ()) or value.dtype.kind != "f":
            raise damaged(
                path, f"'{name}' is {value.dtype}{list(value.shape)}, its parameter {list(shapes[parameter])}"
            )
        keys.setdefault(parameter, set()).add(key)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise damaged(path, f"lacks '{missing[0]}'")
    if keys and (len(keys) != len(order) or len({frozenset(k) for k in keys.values()}) != 1):
        lacking = sorted(order - set(keys)) or sorted(keys)
        raise damaged(path, f"the optimizer state of '{lacking[0]}' is missing or differs from the others'")
    return {name: torch.from_numpy(value.copy()) for name, value in tensors.items()}


def _check_digests(run_dir: Path, directory: Path, meta: _StateFile) -> None:
    """Every file state.json covers holds the bytes it recorded (of metrics.jsonl: the epochs it covers)."""
    epoch = meta.progress.epoch
    for name, digest in meta.files.items():
        path = run_dir / name
        if name not in (METRICS_FILE, *(f"{directory.name}/{file}" for file in CHECKPOINT_FILES)):
            raise damaged(directory / "state.json", f"it records a file the trainer does not write, {name!r}")
        data = read_state(path)
        if name == METRICS_FILE:
            prefix = metrics_prefix(data, epoch)
            if prefix is None:
                raise damaged(path, f"fewer than the {epoch} whole lines the checkpoint covers")
            data = prefix
        if _sha256(data) != digest:
            raise damaged(path, "its content differs from what the trainer wrote (SHA-256 mismatch)")
    expected = {METRICS_FILE, *(f"{directory.name}/{name}" for name in ("weights.safetensors", "state.safetensors"))}
    if meta.progress.best_epoch >= 0:
        expected |= {f"{directory.name}/{name}" for name in BEST_FILES}
    if not expected <= set(meta.files):
        raise damaged(directory / "state.json", f"it records no digest of {sorted(expected - set(meta.files))[0]}")


def load(directory: Path, ir: ModelIR) -> Loaded:
    """Read and validate a checkpoint (and the run files it covers); a damaged file is a `SpecError` naming it."""
    state_json = directory / "state.json"
    meta = _read_json(state_json, _StateFile)
    raw = json.loads(read_state(state_json, TEXT_LIMIT))
    if _self_digest(raw) != meta.digest:
        raise damaged(state_json, "its content differs from what the trainer wrote (SHA-256 mismatch)")
    progress = meta.progress
    if progress.best_epoch >= progress.epoch or (progress.best_epoch < 0) != (progress.best_accuracy == -1.0):
        raise damaged(state_json, f"best epoch {progress.best_epoch} does not fit {progress.epoch} epochs done")
    run_dir = directory.parent
    shapes = canonical.canonical_shapes(ir)
    weights = _weights(directory / "weights.safetensors", ir)
    ema_path = directory / "ema.safetensors"
    ema = None
    if os.path.lexists(ema_path) or f"{directory.name}/ema.safetensors" in meta.files:
        ema = _weights(ema_path, ir)
    tensors = _state_tensors(directory / "state.safetensors", meta, shapes)
    if progress.best_epoch >= 0:  # the best weights and their summary: readable, finite, the network's
        best = _read_json(directory / BEST_JSON, BestFile)
        if (best.epoch, best.accuracy) != (progress.best_epoch, progress.best_accuracy):
            raise damaged(directory / BEST_JSON, f"epoch {best.epoch} is not the best epoch {progress.best_epoch}")
        _weights(directory / BEST_WEIGHTS, ir)
    _check_digests(run_dir, directory, meta)
    rng = []
    for rank, extra in enumerate(meta.rng):
        cuda = [tensors[f"rng.{rank}.cuda.{device}"] for device in range(extra.cuda_devices)]
        torch_cpu, augment = tensors[f"rng.{rank}.torch"], tensors[f"rng.{rank}.augment"]
        numpy_state = extra.numpy.model_dump()
        python = [extra.python[0], list(extra.python[1]), extra.python[2]]
        rng.append(RngState(torch_cpu, augment, numpy_state, python, cuda))
    optimizer = meta.optimizer.model_dump()
    return Loaded(
        Progress(**progress.model_dump()),
        weights,
        ema,
        _optimizer_state(tensors, optimizer),
        rng,
        optimizer["param_groups"],
    )
