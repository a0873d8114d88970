"""A network and recipe small enough to train on builtin:digits in seconds."""

from __future__ import annotations

import pytest

#: 16 px, two stages; a 3-stage recipe with every regulariser on and growing (RandAugment mild: automl's
#: translation moves 10 px per level, more than these images).
TRAIN_SPEC = """\
name = "digits-test"
dialect = automl
input { resolution = 16 }
stem { channels = 8 }
stages {
    r1_k3_s1_e1_i8_o8_c1
    r2_k3_s2_e2_i8_o16_se0.25
}
head { channels = 32 classes = 10 }
defaults { drop_path = 0.2 bn_momentum = 0.9 }
training {
    epochs = 6
    progressive_stages = 3
    image_size = 8 -> 16
    randaug = 0.2 -> 0.6
    mixup = 0 -> 0.4
    dropout = 0.1 -> 0.3
    drop_path = 0.05 -> 0.25
    crop_scale = 0.8
    flip = false
    batch_size = 64
    lr = 0.064
    warmup_epochs = 1
    ema_decay = 0.9
}
"""


@pytest.fixture
def train_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("spec") / "digits_test.spec"
    path.write_text(TRAIN_SPEC)
    return str(path)
