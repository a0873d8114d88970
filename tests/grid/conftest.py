"""A base network for grid searches small enough to train a few proxy epochs in seconds, and global state kept."""

from __future__ import annotations

import importlib
import importlib.util
import random
from collections.abc import Iterator

import numpy as np
import pytest

from tests.training.conftest import TRAIN_SPEC

#: 16 px, two stages (8 and 16 channels), a 3-stage progressive recipe with image size 8 -> 16: at gamma 1.5 the
#: proxy trains 12 -> 24 px. The axes below keep two networks: (1, 1, 1.45) and (1, 1, 1.5) round to the same
#: 24 px network (ratio 2.24), (2, 1, 1) doubles every stage's repeats (ratio 1.83); (1, 1, 1) and (2, 1, 1.45+)
#: are outside 2 +- 15%.
GRID_SPEC = TRAIN_SPEC.replace('name = "digits-test"', 'name = "grid-test"')
GRID_FLAGS = ("--alpha", "1,2", "--beta", "1", "--gamma", "1,1.45,1.5", "--tolerance", "0.15")
TRAIN_IMAGES = 256  # of digits' 1437: 4 steps of 64 an epoch
PROXY_FLAGS = ("--epochs", "2", "--eta", "2", "--top", "1", "--train-images", str(TRAIN_IMAGES), "--threads", "1")


@pytest.fixture(scope="module", autouse=True)
def global_state_kept() -> Iterator[None]:
    """A search in this process seeds every global generator and sets torch's threads (the trainer does, per run):
    hand the modules that follow the state they would have had without these tests."""
    python, numpy = random.getstate(), np.random.get_state()
    torch = importlib.import_module("torch") if importlib.util.find_spec("torch") else None
    saved = (torch.random.get_rng_state(), torch.get_num_threads()) if torch is not None else None
    yield
    random.setstate(python)
    np.random.set_state(numpy)
    if torch is not None and saved is not None:
        torch.random.set_rng_state(saved[0])
        torch.set_num_threads(saved[1])
