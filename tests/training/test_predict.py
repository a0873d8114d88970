"""``specdsl predict``: a run directory's classes and view, a spec with weights, and every bad input one line.

That a run's held-out images get exactly the predictions its best.json records is tested on a real run in
test_train.py; these tests use a run directory written by hand (seeded random weights), so they are fast."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")

from PIL import Image

import specdsl
from specdsl import weights
from tests.conftest import listing, one_error_line, run_main
from tests.training.test_hardening_data import png_header

from .conftest import TRAIN_SPEC

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def write_run(directory: Path, **best: object) -> Path:
    """What `specdsl train` leaves that predict reads: spec.spec, best.safetensors, best.json."""
    directory.mkdir()
    (directory / "spec.spec").write_text(TRAIN_SPEC)
    ir = specdsl.loads(TRAIN_SPEC)
    weights.save(weights.initial(ir, 3), directory / "best.safetensors", ir=ir)
    record = {"epoch": 0, "accuracy": 0.5, "loss": 1.0, "predictions": [], "classes": NAMES, "center_crop": False}
    (directory / "best.json").write_text(json.dumps({**record, **best}))
    return directory


def write_images(directory: Path, count: int = 3, size: int = 20) -> list[Path]:
    directory.mkdir()
    rng = np.random.default_rng(0)
    paths = [directory / f"{index}.png" for index in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(path)
    return paths


def predict_json(*args: str) -> dict:
    code, stdout, stderr = run_main("predict", *args, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def test_a_run_directory_names_its_classes_and_views_images_as_its_evaluation(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    paths = write_images(tmp_path / "images")
    found = predict_json(str(run), str(tmp_path / "images"), "--top", "3")
    assert found["view"] == "whole" and found["weights"] == str(run / "best.safetensors")
    assert [record["path"] for record in found["images"]] == [str(path) for path in paths]
    for record in found["images"]:
        top = record["top"]
        probabilities = [entry["probability"] for entry in top]
        assert len(top) == 3 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
        assert [entry["label"] for entry in top] == [NAMES[entry["class"]] for entry in top]
    # --view overrides the run's view: a centre crop is another input, so other probabilities
    crop = predict_json(str(run), str(paths[0]), "--view", "crop", "--top", "10")
    assert crop["view"] == "crop" and crop["images"][0]["top"] != found["images"][0]["top"]
    # the text form: one line per image, the labels with their probabilities
    code, stdout, _ = run_main("predict", str(run), str(paths[0]), "--top", "2")
    first = found["images"][0]["top"]
    assert code == 0 and stdout == (
        f"{paths[0]}: {first[0]['label']} {first[0]['probability']:.3f}, {first[1]['label']} "
        f"{first[1]['probability']:.3f}\n"
    )


def test_probabilities_are_the_networks_softmax(tmp_path: Path) -> None:
    """The top-10 of 10 classes is the whole softmax of the torch model on the trainer's held-out view."""
    import torch

    from specdsl.training.data import Normalize, eval_view

    run = write_run(tmp_path / "run", center_crop=True)
    (path,) = write_images(tmp_path / "images", count=1)
    found = predict_json(str(run), str(path), "--top", "10")["images"][0]["top"]
    ir = specdsl.loads(TRAIN_SPEC)
    model = specdsl.build(ir, weights=run / "best.safetensors").eval()
    image = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1)
    net = specdsl.lower(ir)
    view = Normalize(net.normalization.mean, net.normalization.std)(eval_view(image, 16, center_crop=True)[None])
    with torch.no_grad():
        expected = torch.softmax(model(view).double(), 1)[0].numpy()
    assert sorted(entry["class"] for entry in found) == list(range(10))
    for entry in found:
        assert entry["probability"] == pytest.approx(expected[entry["class"]], abs=1e-6)


def test_a_spec_takes_weights_and_an_old_run_names_no_classes(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    (path,) = write_images(tmp_path / "images", count=1)
    spec = tmp_path / "net.spec"
    spec.write_text(TRAIN_SPEC)
    from_spec = predict_json(str(spec), str(path), "--weights", str(run / "best.safetensors"), "--view", "whole")
    from_run = predict_json(str(run), str(path))
    assert from_spec["images"][0]["top"] == [{**entry, "label": str(entry["class"])} for entry in
                                             from_run["images"][0]["top"]]  # fmt: skip
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{name.upper()}\n" for name in NAMES))  # --labels names the classes of either
    named = predict_json(str(spec), str(path), "--weights", str(run / "best.safetensors"), "--labels", str(labels))
    assert [entry["label"] for entry in named["images"][0]["top"]] == [
        NAMES[entry["class"]].upper() for entry in named["images"][0]["top"]
    ]
    (run / "best.json").unlink()  # a run from before best.json named its classes: indices, automl's crop
    old = predict_json(str(run), str(path))
    assert old["view"] == "crop" and old["images"][0]["top"][0]["label"] == str(old["images"][0]["top"][0]["class"])


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


#: Each bad input, and what its one line says.
BAD = {
    "spec without weights": "b0: error: a spec needs --weights",
    "missing image": "nothing.png: error: cannot read the image",
    "not an image": "notes.png: error: not an image",
    "image bomb": "bomb.png: error: the image is 400,000,000 pixels, over the limit",
    "fifo": "pipe.png: error: not a regular file (a FIFO)",
    "empty directory": "empty: error: the directory holds no images",
    "top 0": "--top 0: error: must be between 1 and 1000",
    "batch size 0": "--batch-size 0: error: must be between 1 and 4096",
    "weights of another network": "does not fit digits-test",
    "missing weights file": "none.safetensors: cannot read",
    "run without best weights": "best.safetensors: error: missing",
    "damaged best.json": "best.json: error: not the trainer's best.json",
    "best.json of another class count": "best.json: error: names 3 classes; the run's network has 10",
    "two channels": "two.spec: error: image files decode to 1 or 3 channels",
    "directory that is no run": "spec.spec: error: missing: not a run directory",
    "labels of another count": "labels.txt: error: 9 class names for the network's 10 classes",
    "labels with a blank line": "labels.txt:3:1: error: a blank line: one class name per line",
    "labels not utf-8": "labels.txt: error: labels is not valid UTF-8 (byte 3)",
    "labels from a fifo": "labels.txt: error: not a regular file",
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_touches_nothing(case: str, tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    (image,) = write_images(tmp_path / "images", count=1)
    target, extra = str(run), [str(image)]
    if case == "spec without weights":
        target = "b0"
    elif case == "missing image":
        extra = [str(tmp_path / "nothing.png")]
    elif case == "not an image":
        (tmp_path / "notes.png").write_text("not a png\n")
        extra = [str(tmp_path / "notes.png")]
    elif case == "image bomb":
        (tmp_path / "bomb.png").write_bytes(png_header(20000, 20000))
        extra = [str(tmp_path / "bomb.png")]
    elif case == "fifo":
        extra = [str(_fifo(tmp_path / "pipe.png"))]
    elif case == "empty directory":
        (tmp_path / "empty").mkdir()
        extra = [str(tmp_path / "empty")]
    elif case == "top 0":
        extra.append("--top=0")
    elif case == "batch size 0":
        extra.append("--batch-size=0")
    elif case == "weights of another network":
        ir = specdsl.load("mnasnet_small")
        weights.save(weights.initial(ir, 0), tmp_path / "other.safetensors", ir=ir)
        extra += ["--weights", str(tmp_path / "other.safetensors")]
    elif case == "missing weights file":
        extra += ["--weights", str(tmp_path / "none.safetensors")]
    elif case == "run without best weights":
        (run / "best.safetensors").unlink()
    elif case == "damaged best.json":
        (run / "best.json").write_text('{"epoch": ')
    elif case == "best.json of another class count":
        write_run(tmp_path / "run3", classes=["a", "b", "c"])
        target = str(tmp_path / "run3")
    elif case == "two channels":
        spec = tmp_path / "two.spec"
        spec.write_text(TRAIN_SPEC.replace("input { resolution = 16 }", "input { resolution = 16 channels = 2 }"))
        ir = specdsl.load(spec)
        weights.save(weights.initial(ir, 0), tmp_path / "two.safetensors", ir=ir)
        target = str(spec)
        extra += ["--weights", str(tmp_path / "two.safetensors")]
    elif case == "directory that is no run":
        target = str(tmp_path / "images")
    elif case.startswith("labels"):
        labels = tmp_path / "labels.txt"
        if case == "labels from a fifo":
            os.mkfifo(labels)
        else:
            text = {"labels of another count": "\n".join(NAMES[:9]), "labels with a blank line": "a\nb\n\nd\n"}
            labels.write_bytes(text[case].encode() if case in text else b"ant\xff\n")
        extra += ["--labels", str(labels)]
    before = listing(tmp_path)
    code, stdout, stderr = run_main("predict", target, *extra)
    assert code == 2 and stdout == "", stderr
    line = one_error_line(stderr)
    assert BAD[case] in line and listing(tmp_path) == before, line


def test_a_run_on_a_folder_without_val_names_its_classes_and_predicts_as_it_evaluated(tmp_path: Path) -> None:
    """`specdsl train` on class folders alone (no val/) holds out a fixed share and says so; `specdsl predict` on
    the held-out images gives best.json's predictions under the class folders' names, with the centre crop."""
    pytest.importorskip("kornia")
    from specdsl.training.data import open_source

    rng = np.random.default_rng(1)
    for name in NAMES:
        (tmp_path / "photos" / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                tmp_path / "photos" / name / f"{index}.png"
            )
    spec = tmp_path / "net.spec"
    spec.write_text(TRAIN_SPEC)
    run = tmp_path / "run"
    data = str(tmp_path / "photos")
    code, _, stderr = run_main("train", str(spec), "-o", str(run), "--data", data, "--epochs", "3", "--batch-size", "8")
    assert code == 0 and "no val/ folder, so 10 of 30 images are held out" in stderr, stderr
    best = json.loads((run / "best.json").read_text())
    assert best["classes"] == sorted(NAMES) and best["center_crop"] is True
    held_out = open_source(str(tmp_path / "photos"), 3).held_out
    found = predict_json(str(run), *map(str, held_out.paths), "--top", "1")
    assert found["view"] == "crop"
    assert [image["top"][0]["class"] for image in found["images"]] == best["predictions"]
    assert [image["top"][0]["label"] for image in found["images"]] == [sorted(NAMES)[k] for k in best["predictions"]]
