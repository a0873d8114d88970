"""``plot.png``: loss, held-out accuracy and the progressive schedule of a run, from its metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_run(records: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Three panels over epochs: train/held-out loss, held-out accuracy, image size with the regularisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [record["epoch"] + 1 for record in records]
    figure, (loss, accuracy, schedule) = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    loss.plot(epochs, [r["train_loss"] for r in records], label="train (smoothed labels, mixup)")
    evaluated = [r for r in records if r.get("eval_accuracy") is not None]
    loss.plot([r["epoch"] + 1 for r in evaluated], [r["eval_loss"] for r in evaluated], label="held-out")
    loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    loss.legend(fontsize=8)
    accuracy.plot([r["epoch"] + 1 for r in evaluated], [100 * r["eval_accuracy"] for r in evaluated], color="C2")
    accuracy.set(xlabel="epoch", ylabel="%", title="held-out accuracy (EMA weights)")
    accuracy.grid(alpha=0.3)
    sizes = [r["image_size"] for r in records]
    schedule.step(epochs, sizes, where="mid", color="k", linewidth=2.5, label="image size")
    schedule.set_ylim(
        min(sizes) - 0.1 * (max(sizes) - min(sizes) + 1), max(sizes) + 0.1 * (max(sizes) - min(sizes) + 1)
    )
    schedule.set(xlabel="epoch", ylabel="pixels", title="progressive learning")
    regularisation = schedule.twinx()
    for index, key in enumerate(("randaug", "mixup", "dropout", "drop_path")):
        scale = 0.1 if key == "randaug" else 1.0
        label = f"{key} / 10" if key == "randaug" else key
        values = [r[key] * scale for r in records]
        style = ("--", ":", "-.", (0, (5, 1)))[index]
        regularisation.step(epochs, values, where="mid", color=f"C{index}", linestyle=style, label=label)
    regularisation.set_ylabel("strength")
    handles = schedule.get_legend_handles_labels()[0] + regularisation.get_legend_handles_labels()[0]
    schedule.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower right")
    figure.suptitle(title)
    figure.savefig(path, dpi=90, format="png")
    plt.close(figure)
    return path
