"""specdsl's Keras models on Keras's PyTorch backend, for tests: ``python -m tests.keras.torch_worker``.

Keras picks its backend once per process, so the tests (on the TensorFlow backend) keep one of
these running and send it requests. Each stdin line is JSON ``{"spec": path, "resolution": int | null,
"weights": path, "x": path, "out": path}`` (build the spec's Keras model with the canonical weights) or
``{"keras_file": path, "x": path, "out": path}`` (load a ``.keras`` file in safe mode); the model runs
on the NHWC ``.npy`` input in inference mode and the logits go to ``out``. The reply is one line:
``ok <backend>`` or ``error <message>``.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import torch  # (before keras: with tensorflow installed too, keras-on-torch needs torch loaded first)


def serve() -> None:
    import keras
    import numpy as np

    import specdsl
    from specdsl.backends.keras import build

    torch.set_flush_denormal(True)  # random networks' subnormal activations are slow on CPU
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if "keras_file" in request:
                model = keras.models.load_model(request["keras_file"], safe_mode=True)
            else:
                ir = specdsl.load(request["spec"])
                model = build(ir, weights=request["weights"], resolution=request["resolution"])
            out = keras.ops.convert_to_numpy(model(np.load(request["x"]), training=False))
            np.save(request["out"], out)
            reply = f"ok {keras.backend.backend()}"
        except Exception as error:  # reported to the test, which fails with it
            reply = f"error {type(error).__name__}: {error}".replace("\n", " ")
        print(reply, flush=True)


if __name__ == "__main__":
    serve()
