"""The data sources and the per-image views: a fixed digits split, ImageFolder decoding, seeded crops."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
Image = pytest.importorskip("PIL.Image")

from specdsl.errors import SpecError  # noqa: E402
from specdsl.training.data import (  # noqa: E402
    TrainImages,
    batches,
    digits,
    eval_view,
    open_source,
    random_crop_box,
    with_train_subset,
)


def test_digits_split_is_fixed_and_stratified() -> None:
    source = digits(3)
    assert (len(source.train), len(source.held_out)) == (1437, 360)
    assert Counter(source.held_out.labels) == Counter(digits(1).held_out.labels)
    assert all(35 <= count <= 37 for count in Counter(source.held_out.labels).values())
    image = source.train.image(0)
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8 and int(source.train.images.max()) == 255
    assert torch.equal(image[0], image[2]) and torch.equal(digits(1).train.image(0)[0], image[0])
    assert torch.equal(digits(3).held_out.images, source.held_out.images)  # the same 360 images every time


def test_a_training_subset_is_one_fixed_choice_and_leaves_the_held_out_split() -> None:
    """Proxy runs (specdsl grid) compare networks on the same images, whatever their seed."""
    source = digits(3)
    subset = with_train_subset(source, 256)
    assert len(subset.train) == 256 and subset.held_out is source.held_out
    assert list(subset.train.indices) == list(with_train_subset(digits(1), 256).train.indices)
    assert list(subset.train.indices) == sorted(set(subset.train.indices))
    for position in (0, 100, 255):
        original = subset.train.indices[position]
        assert torch.equal(subset.train.image(position), source.train.image(original))
        assert subset.train.labels[position] == source.train.labels[original]
    assert len(Counter(subset.train.labels)) == 10
    assert with_train_subset(source, None) is source and with_train_subset(source, 5000) is source
    with pytest.raises(SpecError, match="at least one image"):
        with_train_subset(source, 0)


def write_folder(root: Path) -> None:
    colours = {"cat": (200, 30, 30), "dog": (30, 30, 200)}
    for split, count in (("train", 3), ("val", 2)):
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                size = (40 + 10 * index, 30)
                image = Image.new("RGB", size, colour) if index else Image.new("L", size, 90)
                image.save(root / split / name / f"{index}.png")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")


def test_image_folder_decodes_and_evaluates_with_automls_centre_crop(tmp_path: Path) -> None:
    write_folder(tmp_path)
    source = open_source(str(tmp_path), channels=3)
    assert source.classes == ("cat", "dog") and source.center_crop
    assert (len(source.train), len(source.held_out), list(source.held_out.labels)) == (6, 4, [0, 0, 1, 1])
    grey, colour = source.train.image(0), source.train.image(1)
    assert grey.shape == (3, 30, 40) and torch.equal(grey[0], grey[1])
    assert colour.shape == (3, 30, 50) and colour[:, 0, 0].tolist() == [200, 30, 30]
    view = eval_view(colour, 24, center_crop=True)
    assert view.shape == (3, 24, 24) and torch.allclose(view[:, 5, 5], torch.tensor([200, 30, 30]) / 255)
    with pytest.raises(SpecError, match="no 'train' directory beside val/"):
        (tmp_path / "train").rename(tmp_path / "training")
        open_source(str(tmp_path), channels=3)
    with pytest.raises(SpecError, match="data directory not found"):
        open_source(str(tmp_path / "missing"), channels=3)


def test_a_folder_without_val_holds_out_a_fixed_share_of_each_class(tmp_path: Path) -> None:
    """Classes straight under DIR (or under DIR/train/ alone): 20% of each class's images, at least one where it has
    two, held out; the same images on every open; the split is said in the source's note."""
    counts = {"ant": 10, "bee": 7, "cow": 1, "dog": 2}
    for name, count in counts.items():
        (tmp_path / "photos" / name).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (12, 10), (index, 20, 30)).save(tmp_path / "photos" / name / f"{index:02d}.png")
    source = open_source(str(tmp_path / "photos"), channels=3)
    assert source.classes == ("ant", "bee", "cow", "dog") and source.center_crop
    assert Counter(source.held_out.labels) == {0: 2, 1: 1, 3: 1}  # int(10 * 0.2), max(int(7 * 0.2), 1), none of 1
    assert Counter(source.train.labels) == {0: 8, 1: 6, 2: 1, 3: 1}
    held, trained = set(source.held_out.paths), set(source.train.paths)
    assert not held & trained and len(held | trained) == sum(counts.values())
    assert all(path.parent.name == source.classes[label] for path, label in
               zip(source.held_out.paths, source.held_out.labels, strict=True))  # fmt: skip
    assert source.note is not None and "4 of 20 images are held out" in source.note
    assert open_source(str(tmp_path / "photos"), channels=1).held_out.paths == source.held_out.paths
    (tmp_path / "split").mkdir()
    (tmp_path / "photos").rename(tmp_path / "split" / "train")  # train/ without val/: the same split of train/
    again = open_source(str(tmp_path / "split"), channels=3)
    assert [path.relative_to(tmp_path / "split" / "train") for path in again.held_out.paths] == [
        path.relative_to(tmp_path / "photos") for path in source.held_out.paths
    ]
    assert open_source(str(tmp_path / "split"), channels=3).note == again.note and digits(3).note is None


def test_random_crops_are_inceptions_and_seeded_per_image() -> None:
    rng = random.Random(0)
    for _ in range(200):
        top, left, h, w = random_crop_box(30, 40, 0.25, rng)
        assert 0 <= top <= 30 - h and 0 <= left <= 40 - w
        assert 0.25 * 1200 * 0.9 <= h * w <= 1200 and 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25
    split = digits(3).train
    epoch0 = TrainImages(split, size=12, epoch=0, seed=0, scale=0.3, flip=True)
    again = TrainImages(split, size=12, epoch=0, seed=0, scale=0.3, flip=True)
    epoch1 = TrainImages(split, size=12, epoch=1, seed=0, scale=0.3, flip=True)
    assert torch.equal(epoch0[7][0], again[7][0]) and not torch.equal(epoch0[7][0], epoch1[7][0])
    order = [[3, 1, 4], [1, 5, 9]]
    inline = list(batches(epoch0, order, workers=0))
    threaded = list(batches(epoch0, order, workers=2))  # DataLoader worker processes crop the same way
    for (x, y), (x2, y2) in zip(inline, threaded, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2) and x.shape == (3, 3, 12, 12)
