"""A base network for grid searches small enough to train a few proxy epochs in seconds."""

from __future__ import annotations

from tests.training.conftest import TRAIN_SPEC

#: 16 px, two stages (8 and 16 channels), a 3-stage progressive recipe with image size 8 -> 16: at gamma 1.5 the
#: proxy trains 12 -> 24 px. The axes below keep two networks: (1, 1, 1.45) and (1, 1, 1.5) round to the same
#: 24 px network (ratio 2.24), (2, 1, 1) doubles every stage's repeats (ratio 1.83); (1, 1, 1) and (2, 1, 1.45+)
#: are outside 2 +- 15%.
GRID_SPEC = TRAIN_SPEC.replace('name = "digits-test"', 'name = "grid-test"')
GRID_FLAGS = ("--alpha", "1,2", "--beta", "1", "--gamma", "1,1.45,1.5", "--tolerance", "0.15")
TRAIN_IMAGES = 256  # of digits' 1437: 4 steps of 64 an epoch
PROXY_FLAGS = ("--epochs", "2", "--eta", "2", "--top", "1", "--train-images", str(TRAIN_IMAGES), "--threads", "1")
