"""Held-out accuracy of any backend: a predict function from normalised NCHW float32 images to logits.

The trainer evaluates its PyTorch model this way, and a deployed model is checked the same way: wrap
the backend's inference in ``predict(images: np.ndarray) -> np.ndarray`` (e.g. an onnxruntime session's
``run``, or a Keras model fed ``images.transpose(0, 2, 3, 1)``) and compare `EvalResult.predictions`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from specdsl.ir import ModelIR
from specdsl.passes.lower import lower
from specdsl.training.data import Normalize, Source, eval_batches

Predict = Callable[[np.ndarray], np.ndarray]
ArrayBatch = tuple[np.ndarray, np.ndarray]  # normalised images (N, C, H, W) float32, labels (N,) int64


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    loss: float  # mean cross-entropy, no label smoothing
    predictions: np.ndarray  # argmax class per image, in held-out order

    @property
    def count(self) -> int:
        return len(self.predictions)


def held_out(ir: ModelIR, source: Source, batch_size: int = 100, workers: int = 0) -> Iterator[ArrayBatch]:
    """The held-out split at the network's evaluation resolution, normalised as the network expects."""
    net = lower(ir)
    normalize = Normalize(net.normalization.mean, net.normalization.std)
    for images, labels in eval_batches(source, net.input_shape[-1], batch_size, workers):
        yield normalize(images).numpy(), labels.numpy()


def evaluate(predict: Predict, batches: Iterable[ArrayBatch]) -> EvalResult:
    predictions, losses, correct = [], [], 0
    for images, labels in batches:
        logits = np.asarray(predict(images), dtype=np.float64)
        shifted = logits - logits.max(1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        losses.append(-log_probs[np.arange(len(labels)), labels])
        predicted = logits.argmax(1)
        correct += int((predicted == labels).sum())
        predictions.append(predicted)
    all_predictions = np.concatenate(predictions)
    return EvalResult(correct / len(all_predictions), float(np.concatenate(losses).mean()), all_predictions)


def torch_predictor(
    model: torch.nn.Module, device: torch.device | str = "cpu", *, channels_last: bool = False
) -> Predict:
    """A PyTorch model (any ``nn.Module`` from specdsl.build or an emitted file) as a predict function."""
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    @torch.no_grad()
    def predict(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images).to(device).contiguous(memory_format=memory_format)
        return model(x).float().cpu().numpy()

    return predict


def file_predictor(path: str | Path) -> Predict:
    """The model file that ``specdsl build`` wrote, read the way a deployment reads it: an emitted PyTorch
    module (``.py``, its ``load_model()``), an ONNX file in onnxruntime, or a ``.keras`` file in Keras (safe
    mode, NHWC input), so that deployed accuracy is measured on the files themselves."""
    path = Path(path)
    if path.suffix == ".py":
        spec = importlib.util.spec_from_file_location(f"deployed_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return torch_predictor(module.load_model())
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (image,) = session.get_inputs()
        return lambda images: session.run(None, {image.name: images})[0]
    if path.suffix == ".keras":
        import keras

        model = keras.models.load_model(path, safe_mode=True)
        return lambda images: keras.ops.convert_to_numpy(model(images.transpose(0, 2, 3, 1), training=False))
    raise ValueError(f"not a model file that specdsl build writes: {path}")
