"""Grid and the trainer share one options object: a proxy task carries the trainer's `TrainOptions`."""

from __future__ import annotations

import dataclasses

from specdsl.grid.proxy import Task, proxy_options
from specdsl.training.options import TrainOptions


def test_grid_proxy_runs_train_with_the_trainer_options() -> None:
    """A grid task carries the trainer's own options object; the worker only adds its slot and resume state."""
    options = proxy_options(data="builtin:digits", seed=7, train_images=300, epochs=3, eval_every=1)
    task = Task(candidate=0, rung=1, spec_text="", run_dir="runs/n000", options=options)
    assert isinstance(task.options, TrainOptions) and task.epochs == 3
    assert (options.quiet, options.plot, options.distributed) == (True, False, False)
    expected = TrainOptions(data="builtin:digits", seed=7, train_images=300, stop_at_epoch=3, eval_every=1)
    assert dataclasses.replace(options, quiet=False, plot=True, distributed=True) == expected
