"""Fine-tuning acceptance: pretrained weights must beat a random init on a disjoint task with another class count,
at the same budget and seed, and the fine-tuned weights must deploy through every backend with the same
held-out predictions.

Data: scikit-learn's digits split by class into two ImageFolders written here. Pretraining: specs/digits_tiny.spec
(its 20-epoch recipe) on digits 0-5 (6 classes, every image but a held-out fifth). Fine-tuning: digits 6-9
(4 classes) with only ``--per-class`` training images each (a small data set is where pretraining pays), the
rest held out; two runs with the same recipe (``--set epochs=... batch_size=16``), seed and thread count: one
``--init`` from the pretrained best.safetensors (its 6-class classifier is rebuilt for 4 classes), one from the
random init. Then the fine-tuned best.safetensors is built with ``specdsl build`` for torch, ONNX and Keras, and
the held-out predictions of each file written are compared with the trainer's.
Writes benchmarks/results_finetune_digits.md and docs/img/finetune_digits.png.

    python benchmarks/finetune_digits.py [--threads 1] [--per-class 10] [--epochs 12]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from frontend import cpu_name  # this folder is sys.path[0] when run as a script
from PIL import Image
from sklearn.datasets import load_digits

import specdsl
from specdsl.training import TrainOptions, train
from specdsl.training.data import open_source
from specdsl.training.evaluate import evaluate, file_predictor, held_out

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN_SPEC = 'extends = "specdsl:digits_tiny"\nname = "digits-tiny-6"\nhead { classes = 6 }\n'
BACKENDS = ("torch", "onnx", "keras")
CROP = {"crop_scale": 0.25}


def write_folder(root: Path, labels: range, per_class: int | None) -> Path:
    """An ImageFolder of the digits of ``labels``: ``per_class`` training images each (None: four fifths), the
    rest held out (val/). Each 8x8 digit is stored 0-255 in the middle of a 16x16 black canvas, since an
    ImageFolder is evaluated on automl's centre crop (the middle half at 32 px); training crops cover 25-100%
    of the canvas (``crop_scale = 0.25`` for every run) to see the digit at that scale too."""
    digits = load_digits()
    for label in labels:
        images = digits.images[digits.target == label]
        count = per_class if per_class is not None else len(images) * 4 // 5
        for split, chosen in (("train", images[:count]), ("val", images[count:])):
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index, image in enumerate(chosen):
                canvas = np.zeros((16, 16))  # the digit fills the centre half: what automl's eval centre crop keeps
                canvas[4:12, 4:12] = image * 16
                Image.fromarray(canvas.clip(0, 255).astype(np.uint8), "L").save(folder / f"{index}.png")
    return root


def deployed(run_dir: Path, data: Path) -> dict[str, tuple[float, bool]]:
    """Per backend: held-out accuracy of best.safetensors as built by ``specdsl build`` and read back from the
    file written, and whether its predictions are the trainer's."""
    spec = run_dir / "spec.spec"
    batches = list(held_out(specdsl.load(spec), open_source(str(data), 3)))
    recorded = json.loads((run_dir / "best.json").read_text())["predictions"]
    results = {}
    for backend in BACKENDS:
        weights, target = str(run_dir / "best.safetensors"), str(run_dir / "deploy" / backend)
        command = [sys.executable, "-m", "specdsl", "build", str(spec), "--backend", backend, "--weights", weights,
                   "-o", target, "--force", "--json"]  # fmt: skip
        built = subprocess.run(command, check=True, capture_output=True, text=True)
        result = evaluate(file_predictor(json.loads(built.stdout)["written"][0]), batches)
        results[backend] = (result.accuracy, result.predictions.tolist() == recorded)
    return results


def plot(runs: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for label, result in runs.items():
        epochs = [r["epoch"] + 1 for r in result.metrics]
        axis.plot(epochs, [100 * r["eval_accuracy"] for r in result.metrics], marker="o", label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("held-out accuracy (%)")
    axis.set_title("digits 6-9, fine-tuned from digits 0-5 vs random init")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=10, help="fine-tuning images per class (default 10)")
    parser.add_argument("--epochs", type=int, default=12, help="fine-tuning epochs (default 12)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "build" / "finetune_digits")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_finetune_digits.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out_dir
    if out.exists():
        import shutil

        shutil.rmtree(out)
    pretrain_data = write_folder(out / "digits0-5", range(0, 6), None)
    tune_data = write_folder(out / "digits6-9", range(6, 10), args.per_class)
    spec, scratch_spec = out / "digits_tiny_6.spec", out / "digits_tiny_4.spec"
    spec.write_text(PRETRAIN_SPEC)
    scratch_spec.write_text(PRETRAIN_SPEC.replace("6", "4"))  # what --init rebuilds the 6-class network into
    load_before = os.getloadavg()[0]
    common = {"threads": args.threads, "quiet": True}

    started = time.perf_counter()
    pretrained = train(spec, out / "pretrain", TrainOptions(data=str(pretrain_data), recipe=CROP, **common))
    pretrain_s = time.perf_counter() - started
    recipe = {"epochs": args.epochs, "batch_size": 16, **CROP}
    runs, seconds = {}, {}
    for label, init in (("--init pretrained", str(out / "pretrain" / "best.safetensors")), ("random init", None)):
        started = time.perf_counter()
        runs[label] = train(scratch_spec if init is None else spec, out / label.split()[-1],
                            TrainOptions(data=str(tune_data), recipe=recipe, init=init, **common))  # fmt: skip
        seconds[label] = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    backends = deployed(out / "pretrained", tune_data)
    plot(runs, ROOT / "docs" / "img" / "finetune_digits.png")

    tuned, scratch = runs["--init pretrained"], runs["random init"]
    won = tuned.best_accuracy > scratch.best_accuracy
    identical = all(same for _, same in backends.values())
    held = len(json.loads((out / "pretrained" / "best.json").read_text())["predictions"])
    command = f"python {os.path.relpath(__file__, ROOT)} --threads {args.threads} --per-class {args.per_class} " \
              f"--epochs {args.epochs}"  # fmt: skip
    lines = [
        "# Acceptance: fine-tuning digits_tiny from a disjoint pretraining task",
        "",
        f"Command: `{command}`; torch threads: {torch.get_num_threads()}",
        "",
        f"- CPU: {cpu_name()} ({os.cpu_count()} logical cores); 1-minute load average {load_before:.2f} before, "
        f"{load_after:.2f} after (other jobs share the cores); torch {torch.__version__}, "
        f"Python {platform.python_version()}",
        f"- pretraining: digits 0-5 (6 classes), digits_tiny's 20-epoch recipe (crop_scale 0.25): best held-out "
        f"{100 * pretrained.best_accuracy:.2f}% in {pretrain_s:.1f} s",
        f"- fine-tuning: digits 6-9 (4 classes), {args.per_class} training images per class, {held} held out; "
        f"{args.epochs} epochs, batch 16, crop_scale 0.25, seed 0, same recipe for both runs",
        *(
            f"- {label}: best held-out accuracy **{100 * result.best_accuracy:.2f}%** (epoch {result.best_epoch + 1}), "
            f"last {100 * result.accuracy:.2f}%, {seconds[label]:.1f} s"
            for label, result in runs.items()
        ),
        *(
            f"- fine-tuned best.safetensors through `specdsl build --backend {backend}`, read from the file it wrote: "
            f"{100 * accuracy:.2f}%, predictions identical to the trainer's: {'yes' if same else '**no**'}"
            for backend, (accuracy, same) in backends.items()
        ),
        f"- acceptance met (pretrained wins, every backend identical): {'yes' if won and identical else '**no**'}",
        "",
        "![held-out accuracy per epoch](../docs/img/finetune_digits.png)",
        "",
    ]
    text = "\n".join(lines)
    args.results.write_text(text)
    print(text)
    return 0 if won and identical else 1


if __name__ == "__main__":
    sys.exit(main())
