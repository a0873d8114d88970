"""The training loop: progressive stages, epochs of optimizer steps, evaluation, checkpoints.

Per optimizer step (google/automl's recipe): ``grad_accumulation`` micro-batches of random-resized,
flipped images at the stage's size, RandAugment at the stage's magnitude, mixup at its alpha, then
cross-entropy with label smoothing, the recipe's optimizer at the scheduled learning rate, and the EMA
update. After each epoch rank 0 evaluates the EMA weights at the spec's evaluation resolution, appends to
``metrics.jsonl``, keeps ``best.safetensors`` and replaces the checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from specdsl import weights as canonical
from specdsl.backends.torch.model import build_network
from specdsl.errors import SpecError
from specdsl.ir import ModelIR
from specdsl.passes.lower import lower
from specdsl.passes.regularisation import dropout_name
from specdsl.training import checkpoint
from specdsl.training.augment import mixup, rand_augment
from specdsl.training.data import Normalize, Source, TrainImages, batches
from specdsl.training.distributed import Context, synchronize_batch_norm
from specdsl.training.ema import WeightAverage
from specdsl.training.evaluate import EvalResult, evaluate, held_out, torch_predictor
from specdsl.training.finetune import Tuning
from specdsl.training.log import append_metrics, progress_bar, read_metrics, truncate_metrics
from specdsl.training.optim import build_optimizer, set_learning_rate
from specdsl.training.options import TrainOptions
from specdsl.training.plot import plot_run
from specdsl.training.rates import apply_rates, current_rates, stage_rates
from specdsl.training.rundir import BEST_JSON, BEST_WEIGHTS, damaged, write_atomic, write_text
from specdsl.training.schedule import LearningRate, StagePlan, schedule_of, stage_at


def seed_of(seed: int, rank: int, purpose: str) -> int:
    """A 63-bit seed for one rank and purpose, derived from the run's seed (stable across Python versions)."""
    digest = hashlib.sha256(f"specdsl-train:{seed}:{rank}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_process(seed: int) -> None:
    """Seed torch's, numpy's and Python's global generators: a fresh run starts from the same state."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class Trainer:
    """One run of ``ir``'s recipe on ``source``, writing into ``run_dir`` (rank 0 only)."""

    def __init__(
        self,
        ir: ModelIR,
        source: Source,
        run_dir: Path,
        ctx: Context,
        options: TrainOptions,
        tuning: Tuning | None = None,
    ) -> None:
        self.ir, self.source, self.run_dir, self.ctx, self.options = ir, source, run_dir, ctx, options
        self.tuning = tuning  # fine-tuning: the init, frozen layers, layer-wise learning rates
        self.recipe = ir.training
        self.plan = schedule_of(ir)
        self.net = lower(ir)  # the whole classifier, also for a spec that declares backbone outputs
        self.dropout = dropout_name(self.net)  # the classifier's dropout op, whose rate the metrics log records
        self.normalize = Normalize(self.net.normalization.mean, self.net.normalization.std, ctx.device)
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format

        recipe, world = self.recipe, ctx.world_size
        if recipe.batch_size % (world * recipe.grad_accumulation):
            raise SpecError(
                f"batch_size {recipe.batch_size} does not split into {world} process(es) x "
                f"{recipe.grad_accumulation} accumulation step(s)",
                path="training.batch_size",
            )
        self.micro_batch = recipe.batch_size // (world * recipe.grad_accumulation)
        self.steps_per_epoch = len(source.train) // recipe.batch_size
        if self.steps_per_epoch == 0:
            raise SpecError(
                f"{len(source.train)} training images make no batch of {recipe.batch_size}: lower --batch-size",
                path=source.name,
            )
        self.lr = LearningRate.of(recipe, steps_per_epoch=self.steps_per_epoch, batch_size=recipe.batch_size)

        self.model = build_network(self.net, ir, seed=options.seed, memory_efficient=options.memory_efficient)
        self.model = self.model.to(ctx.device)
        self.model = self.model.to(memory_format=self.memory_format)
        lr_scales = None if tuning is None else tuning.apply(self.model)  # before the EMA copies the weights
        if ctx.distributed:
            synchronize_batch_norm(self.model, ctx.device)
        self.optimizer = build_optimizer(self.model, self.net, recipe, lr_scales)
        self.ema = WeightAverage(self.model, recipe.ema_decay) if recipe.ema_decay > 0 else None
        self.eval_model = None  # rank 0 evaluates
        if ctx.is_main:
            self.eval_model = build_network(self.net, ir, seed=options.seed).to(ctx.device)
            self.eval_model = self.eval_model.to(memory_format=self.memory_format).eval()
        self.augment = torch.Generator().manual_seed(seed_of(options.seed, ctx.rank, "augment"))
        seed_process(seed_of(options.seed, ctx.rank, "process"))  # dropout masks; resume restores the states
        self.scaler = torch.amp.GradScaler(ctx.device.type) if options.amp == "fp16" else None
        self.progress = checkpoint.Progress()

        module: nn.Module = self.model
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if ctx.distributed:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            module = self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        if options.compile:
            backend = "inductor" if options.compile is True else options.compile
            module = torch.compile(module, backend=backend)
        self.train_module = module

    # ------------------------------------------------------------------------------------------ state

    def resume(self) -> None:
        """Continue from ``run_dir/checkpoint``: weights, EMA, optimizer, step, every rank's RNG."""
        loaded = checkpoint.load(self.run_dir / "checkpoint", self.ir)
        if len(loaded.rng) != self.ctx.world_size:
            raise SpecError(
                f"the checkpoint was written by {len(loaded.rng)} process(es); resume with the same number",
                path=str(self.run_dir),
            )
        self._check_resumable(loaded)
        if self.ctx.is_main:
            checkpoint.restore_best(self.run_dir / "checkpoint")
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                if name in loaded.weights:
                    value.copy_(torch.from_numpy(loaded.weights[name]))
        self.optimizer.load_state_dict(loaded.optimizer_state)
        if self.ema is not None and loaded.ema is not None:
            self.ema.state = {name: torch.from_numpy(loaded.ema[name]).to(self.ctx.device) for name in self.ema.state}
            self.ema.updates = loaded.progress.ema_updates
        loaded.rng[self.ctx.rank].restore(self.augment)
        self.progress = loaded.progress

    def _check_resumable(self, loaded: checkpoint.Loaded) -> None:
        """What a checkpoint must agree on with this run: epochs, steps, EMA, the optimizer's parameters and
        hyper-parameters (the spec, hence all of these, was checked equal to the run's)."""
        progress, state_json = loaded.progress, self.run_dir / "checkpoint" / "state.json"
        problems = []
        if progress.epoch > self.recipe.epochs:
            problems.append(f"epoch {progress.epoch} of a {self.recipe.epochs}-epoch recipe")
        if progress.step != progress.epoch * self.steps_per_epoch:
            problems.append(f"step {progress.step} after {progress.epoch} epochs of {self.steps_per_epoch} steps")
        if (self.ema is None) != (loaded.ema is None) or progress.ema_updates != (progress.step if self.ema else 0):
            problems.append(f"{progress.ema_updates} EMA updates after {progress.step} steps")
        names = {id(param): name for name, param in self.model.named_parameters()}
        expected = checkpoint.saved_param_groups(self.optimizer, names)
        if checkpoint.without_lr(loaded.param_groups) != checkpoint.without_lr(expected):
            problems.append("an optimizer whose parameters or hyper-parameters differ from the recipe's")
        if problems:
            raise damaged(state_json, f"it records {problems[0]}")

    def _save(self) -> None:
        state = checkpoint.RngState.capture(self.augment)
        states = [state]
        if self.ctx.distributed:
            states = [None] * self.ctx.world_size
            dist.all_gather_object(states, state)
        if self.ctx.is_main:
            self.progress.ema_updates = self.ema.updates if self.ema is not None else 0
            checkpoint.save(
                self.run_dir / "checkpoint",
                ir=self.ir,
                model=self.model,
                ema_state=None if self.ema is None else self.ema.state,
                optimizer=self.optimizer,
                progress=self.progress,
                rng=states,
            )

    # ------------------------------------------------------------------------------------------ steps

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.options.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.options.amp == "bf16" else torch.float16
        return torch.autocast(self.ctx.device.type, dtype=dtype)

    def _index_batches(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches: DistributedSampler's shard of the epoch's permutation (seed + epoch), so
        the ranks' micro-batches together are the global batch one process would take."""
        sampler = DistributedSampler(
            range(len(self.source.train)),
            num_replicas=self.ctx.world_size,
            rank=self.ctx.rank,
            shuffle=True,
            seed=self.options.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        count = self.steps_per_epoch * self.recipe.grad_accumulation
        indices = list(sampler)[: count * self.micro_batch]
        return [indices[i : i + self.micro_batch] for i in range(0, len(indices), self.micro_batch)]

    def prepare(self, images: torch.Tensor, labels: torch.Tensor, stage: StagePlan) -> tuple[torch.Tensor, ...]:
        """RandAugment, mixup (soft targets), normalisation and layout of one micro-batch."""
        x = images.to(self.ctx.device)
        if stage.randaug > 0:
            x = rand_augment(x, self.recipe.randaug_layers, stage.randaug, self.augment)
        targets = F.one_hot(labels.to(self.ctx.device), self.ir.head.classes).float()
        x, targets = mixup(x, targets, stage.mixup, self.augment)
        return self.normalize(x).contiguous(memory_format=self.memory_format), targets

    def train_step(self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """One optimizer step over ``grad_accumulation`` prepared micro-batches; returns their mean loss."""
        set_learning_rate(self.optimizer, self.lr(self.progress.step))
        total = 0.0
        for index, (x, targets) in enumerate(micro_batches):
            last = index == len(micro_batches) - 1
            # DDP all-reduces gradients on the last micro-batch only.
            with contextlib.nullcontext() if self.ddp is None or last else self.ddp.no_sync():
                with self._autocast():
                    logits = self.train_module(x)
                loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.recipe.label_smoothing)
                scaled = loss / len(micro_batches)
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.item()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.progress.step += 1
        return total / len(micro_batches)

    # ------------------------------------------------------------------------------------------ epochs

    def train_epoch(self, epoch: int, stage: StagePlan) -> dict[str, Any]:
        rates = stage_rates(self.ir, stage)
        apply_rates(self.model, rates)
        if current_rates(self.model, list(rates)) != rates:  # a bug: the model would not train the plan
            raise RuntimeError("the model's dropout / drop-path modules did not take the stage's rates")
        self.model.train()
        if self.tuning is not None:
            self.tuning.freeze_statistics(self.model)
        dataset = TrainImages(
            self.source.train,
            size=stage.image_size,
            epoch=epoch,
            seed=self.options.seed,
            scale=self.recipe.crop_scale,
            flip=self.recipe.flip,
        )
        accumulation = self.recipe.grad_accumulation
        description = (
            f"epoch {epoch + 1}/{self.recipe.epochs} stage {stage.stage}/{len(self.plan)} {stage.image_size}px"
        )
        bar = progress_bar(self.steps_per_epoch, description, enabled=self.ctx.is_main and not self.options.quiet)
        losses, pending, started, sizes = [], [], time.perf_counter(), set()
        for images, labels in batches(dataset, self._index_batches(epoch), self.options.workers):
            sizes.add(images.shape[-1])
            pending.append(self.prepare(images, labels, stage))
            if len(pending) == accumulation:
                losses.append(self.train_step(pending))
                pending = []
                elapsed = time.perf_counter() - started
                rate = len(losses) * self.recipe.batch_size / elapsed
                bar.set_postfix(loss=f"{sum(losses) / len(losses):.4f}", img_s=f"{rate:.0f}", refresh=False)
                bar.update()
        bar.close()
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch,
            "stage": stage.stage,
            "image_size": sizes.pop() if len(sizes) == 1 else sorted(sizes),
            "randaug": stage.randaug,
            "randaug_layers": self.recipe.randaug_layers if stage.randaug > 0 else 0,
            "mixup": stage.mixup,
            "dropout": current_rates(self.model, [self.dropout])[self.dropout],
            "drop_path": stage.drop_path,  # block i of N runs at drop_path * i / N (checked above)
            "lr": self.lr(self.progress.step - 1),
            "step": self.progress.step,
            "train_loss": self.ctx.mean(sum(losses) / len(losses)),
            "replica_max_difference": self.ctx.replica_difference(self.model),
            "threads": torch.get_num_threads(),  # CPU results depend on it (kernels split their sums by thread)
            "train_seconds": seconds,
            "images_per_second": self.steps_per_epoch * self.recipe.batch_size / seconds,
        }

    def evaluate(self) -> EvalResult:
        """Held-out accuracy of the EMA weights (the raw weights without EMA), at the evaluation resolution."""
        if self.ema is not None:
            self.ema.load_into(self.eval_model)
        else:
            self.eval_model.load_state_dict(self.model.state_dict(), strict=False)
        predict = torch_predictor(self.eval_model, self.ctx.device, channels_last=self.options.channels_last)
        return evaluate(predict, held_out(self.ir, self.source, self.options.eval_batch_size, self.options.workers))

    def run(self) -> None:
        metrics = self.run_dir / "metrics.jsonl"
        if self.ctx.is_main:
            truncate_metrics(metrics, self.progress.epoch)
        last = self.recipe.epochs if self.options.stop_at_epoch is None else self.options.stop_at_epoch
        for epoch in range(self.progress.epoch, min(last, self.recipe.epochs)):
            stage = stage_at(self.plan, epoch)
            record = self.train_epoch(epoch, stage)
            done = epoch + 1 == self.recipe.epochs
            if self.ctx.is_main and ((epoch + 1) % self.options.eval_every == 0 or done):
                result = self.evaluate()
                record |= {"eval_accuracy": result.accuracy, "eval_loss": result.loss}
                if result.accuracy > self.progress.best_accuracy:
                    self._write_best(epoch, result)
            self.progress.epoch = epoch + 1
            if self.ctx.is_main:  # before the checkpoint: a resumed run drops records past its checkpoint
                append_metrics(metrics, record)
            self._save()
            drawn = done or epoch + 1 == stage.end_epoch or epoch + 1 == last
            if self.ctx.is_main and self.options.plot and drawn:
                self._plot(read_metrics(metrics))
            self.ctx.barrier()

    def _plot(self, records: list[dict[str, Any]]) -> None:
        title = f"{self.ir.name} on {self.source.name}"
        write_atomic(self.run_dir / "plot.png", lambda path: plot_run(records, path, title))

    def _write_best(self, epoch: int, result: EvalResult) -> None:
        """best.json and best.safetensors, each renamed into place whole (the next checkpoint keeps a copy)."""
        self.progress.best_accuracy, self.progress.best_epoch = result.accuracy, epoch
        summary = {"epoch": epoch, "accuracy": result.accuracy, "loss": result.loss}
        summary["predictions"] = result.predictions.tolist()
        # what `specdsl predict RUN_DIR` needs to name classes and view images as this evaluation did
        summary |= {"classes": list(self.source.classes), "center_crop": self.source.center_crop}
        write_text(self.run_dir / BEST_JSON, json.dumps(summary) + "\n")
        write_atomic(self.run_dir / BEST_WEIGHTS, lambda path: canonical.save(self.eval_model, path, ir=self.ir))
