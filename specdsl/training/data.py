"""Images in, float batches out: the data sources and the per-image crop, flip and resize.

A source has a train split and a fixed held-out split of uint8 images (C, H, W) with integer labels:

* ``builtin:digits``: scikit-learn's handwritten digits (1797 images of 8x8, values 0-16, no download),
  scaled to 0-255 and repeated over the network's input channels; the held-out split is a stratified
  20% drawn with a fixed seed, so every run and every machine evaluates on the same 360 images;
* a directory laid out like torchvision's ImageFolder: ``DIR/train/<class>/*`` and ``DIR/val/<class>/*``,
  decoded with PIL; without ``val/``, the class folders of ``DIR/train/`` or of ``DIR`` itself, with a fixed
  share of each class held out (`held_out_indices`). Only regular files are read (a symlink to one is
  followed; a FIFO, device, socket or broken link is an error); every image's header is read when the
  folder is opened, and one larger than
  `MAX_IMAGE_PIXELS`, one PIL cannot identify, an empty class folder or a class in ``val/`` that ``train/``
  lacks is an error naming the file or folder, before anything is trained or written. Decoding is bounded
  by the pixel limit; an image that fails to decode later (data cut short after a good header) is the same
  one-line error, from DataLoader workers too.

Training crops are google/automl's (Inception) random-resized crop, then a random horizontal flip and
a bilinear resize to the stage's size. Every random choice for an image is drawn from a generator seeded
by (seed, epoch, image index) alone, so a batch is the same whichever process, worker or resumed run
computes it. Evaluation takes automl's centre crop (size / (size + 32) of the shorter side) of
photographs, or the whole image for digits, resized to the evaluation resolution.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import re
import stat
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from specdsl.errors import SpecError

BUILTIN_PREFIX = "builtin:"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
#: Held out of a data folder without val/: a fixed share of each class (builtin:digits holds out the same share).
HELD_OUT_SHARE = 0.2
HELD_OUT_SEED = 20_240_601  # any fixed number: the choice must not follow a run's --seed
EVAL_CROP_PADDING = 32  # google/automl preprocessing: centre crop image_size / (image_size + 32)
#: Largest image read from a data folder, in pixels (width x height): 36 megapixels, 6000x6000 or a 7360x4912
#: photograph; checked from the header before decoding, so one image never takes more than ~0.6 GB to decode
#: and crop (RGB bytes, then the float crop). PIL's own bomb check (89 MP, an error at 179 MP) never comes first.
MAX_IMAGE_PIXELS = 6000 * 6000

_FILE_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device", stat.S_IFSOCK: "a socket"}


class Split(Protocol):
    """One split of a source: ``len()`` images, each a uint8 tensor (C, H, W), and their labels."""

    labels: Sequence[int]

    def __len__(self) -> int: ...

    def image(self, index: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class Source:
    """A data set: class names, a train split, a held-out split and how evaluation crops."""

    name: str
    classes: tuple[str, ...]
    train: Split
    held_out: Split
    center_crop: bool  # automl's eval centre crop (photographs) or the whole image (digits)
    note: str | None = None  # how the held-out split was made, where the data did not say (told before training)


@dataclass(frozen=True)
class TensorSplit:
    """Images already in memory: (N, C, H, W) uint8."""

    images: torch.Tensor
    labels: Sequence[int]

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> torch.Tensor:
        return self.images[index]


@dataclass(frozen=True)
class FileSplit:
    """Image files decoded on demand with PIL, to greyscale (1 channel) or RGB (3)."""

    paths: Sequence[Path]
    labels: Sequence[int]
    channels: int

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        with open_image(path) as opened:
            try:
                array = np.asarray(opened.convert("L" if self.channels == 1 else "RGB"))
            except (OSError, ValueError, SyntaxError, MemoryError) as error:  # what PIL raises for damaged data
                raise SpecError(f"cannot decode the image: {_reason(error)}", path=str(path)) from None
        return torch.from_numpy(array.copy()).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1)


def _reason(error: BaseException) -> str:
    text = (getattr(error, "strerror", None) or str(error) or type(error).__name__).splitlines()[0]
    return text[:200]


@contextlib.contextmanager
def open_image(path: Path) -> Iterator[Any]:
    """The PIL image of the regular file at ``path`` (a symlink to one is followed), its header read and its size
    checked against `MAX_IMAGE_PIXELS`; the pixels are not decoded yet, and the file is closed on leaving. Anything
    else is a `SpecError` naming it: a FIFO (opened without blocking), a device, an unreadable or unidentifiable
    file, an image too large."""
    from PIL import Image, UnidentifiedImageError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise SpecError(f"cannot read the image: {_reason(error)}", path=str(path)) from None
    with os.fdopen(fd, "rb") as file:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            raise SpecError(f"not a regular file ({_FILE_KINDS.get(kind, 'not a file')}): not read", path=str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                image = Image.open(file)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:  # PIL's check, larger
                found = re.search(r"\((\d+) pixels\)", str(error))
                size = f"{int(found.group(1)):,} pixels, " if found else ""
                raise SpecError(f"the image is {size}over the limit of {MAX_IMAGE_PIXELS:,}", path=str(path)) from None
            except UnidentifiedImageError:
                raise SpecError("not an image (damaged, empty or of another format)", path=str(path)) from None
            except (OSError, ValueError, SyntaxError) as error:
                raise SpecError(f"cannot read the image: {_reason(error)}", path=str(path)) from None
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise SpecError(
                    f"the image is {width}x{height} = {width * height:,} pixels, over the limit of "
                    f"{MAX_IMAGE_PIXELS:,}",
                    path=str(path),
                )
            yield image


@dataclass(frozen=True)
class SubsetSplit:
    """Some images of another split, by index."""

    split: Split
    indices: Sequence[int]
    labels: Sequence[int]

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, index: int) -> torch.Tensor:
        return self.split.image(self.indices[index])


def with_train_subset(source: Source, count: int | None) -> Source:
    """``source`` training on ``count`` of its images (all when None): the same fixed random choice on every
    machine and run, whatever the training seed, so short proxy runs (``specdsl grid``) compare networks on
    the same images. The held-out split is unchanged."""
    if count is None or count >= len(source.train):
        return source
    if count < 1:
        raise SpecError(f"a training subset needs at least one image, got {count}", path=source.name)
    chosen = sorted(random.Random("specdsl-train-subset").sample(range(len(source.train)), count))
    labels = [source.train.labels[index] for index in chosen]
    return dataclasses.replace(source, train=SubsetSplit(source.train, chosen, labels))


def digits(channels: int, seed: int = 0) -> Source:
    """scikit-learn's digits as 8x8 uint8 images with a fixed, stratified 20% held out."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    pixels = np.rint(data.images * (255.0 / 16.0)).astype(np.uint8)
    images = torch.from_numpy(pixels)[:, None].expand(-1, channels, -1, -1).contiguous()
    indices = np.arange(len(images))
    train, held_out = train_test_split(indices, test_size=HELD_OUT_SHARE, stratify=data.target, random_state=seed)
    train, held_out = np.sort(train), np.sort(held_out)
    labels = data.target.tolist()
    return Source(
        name="builtin:digits",
        classes=tuple(str(name) for name in data.target_names),
        train=TensorSplit(images[train], [labels[i] for i in train]),
        held_out=TensorSplit(images[held_out], [labels[i] for i in held_out]),
        center_crop=False,
    )


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        raise SpecError(f"cannot list the directory: {_reason(error)}", path=str(directory)) from None


def image_files(directory: Path) -> list[Path]:
    """The image files directly in ``directory`` (by extension, sorted; hidden files, such as macOS's ``._*``
    companions, skipped), each one's header checked (`open_image`)."""
    paths = [
        Path(entry.path)
        for entry in _entries(directory)
        if not entry.name.startswith(".") and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
    ]
    for path in paths:
        with open_image(path):
            pass
    return paths


def check_channels(channels: int, path: str) -> None:
    """Image files decode to greyscale or RGB: a network taking other input has no image files to read."""
    if channels not in (1, 3):
        raise SpecError(f"image files decode to 1 or 3 channels; the network takes {channels}", path=path)


def image_folder(root: Path, channels: int) -> Source:
    """``root/train/<class>/*`` and ``root/val/<class>/*``; without ``val/``, the classes of ``root/train/`` (or of
    ``root`` itself) with a fixed share of each class held out (`held_out_indices`)."""
    check_channels(channels, str(root))
    if (root / "val").is_dir():
        return _split_folder(root, channels)
    directory = root / "train" if (root / "train").is_dir() else root
    classes = _class_directories(directory, "<class>/<images>, or train/<class>/ and val/<class>/")
    train: tuple[list[Path], list[int]] = ([], [])
    held: tuple[list[Path], list[int]] = ([], [])
    for label, name in enumerate(classes):
        files = _class_files(directory / name)
        chosen = set(held_out_indices(len(files), label))
        for index, path in enumerate(files):
            split = held if index in chosen else train
            split[0].append(path)
            split[1].append(label)
    if not held[0]:
        raise SpecError(
            "no class has the 2 images a held-out split needs: add images, or give val/<class>/ folders",
            path=str(directory),
        )
    note = (
        f"{directory}: no val/ folder, so {len(held[0])} of {len(held[0]) + len(train[0])} images are held out for "
        f"evaluation (a fixed {HELD_OUT_SHARE:.0%} of each class, the same on every run)"
    )
    held_out = FileSplit(*held, channels)
    return Source(str(root), classes, FileSplit(*train, channels), held_out, center_crop=True, note=note)


def held_out_indices(count: int, label: int) -> list[int]:
    """Which of a class's ``count`` images (sorted by name) a folder without val/ holds out: `HELD_OUT_SHARE` of
    them (at least one where the class has two), drawn by a generator seeded by the label alone, so every run,
    rank and resumed run holds out the same images."""
    share = int(count * HELD_OUT_SHARE)
    share = max(share, 1) if count >= 2 else 0
    return sorted(np.random.default_rng([HELD_OUT_SEED, label]).permutation(count)[:share].tolist())


def _class_directories(directory: Path, expected: str) -> tuple[str, ...]:
    classes = tuple(entry.name for entry in _entries(directory) if entry.is_dir())
    if not classes:
        raise SpecError(f"no class directories (expected {expected})", path=str(directory))
    return classes


def _class_files(directory: Path) -> list[Path]:
    files = image_files(directory)
    if not files:
        raise SpecError(f"class directory holds no images ({', '.join(IMAGE_SUFFIXES)})", path=str(directory))
    return files


def _split_folder(root: Path, channels: int) -> Source:
    """``root/train/<class>/*`` and ``root/val/<class>/*``; classes are the train sub-directories, sorted. Every
    class folder of train/ must hold images; val/ may lack a class, but has none train/ lacks."""
    if not (root / "train").is_dir():
        raise SpecError("no 'train' directory beside val/ (expected train/<class>/<images>)", path=str(root))
    classes = _class_directories(root / "train", "train/<class>/<images>")
    splits = {}
    for split in ("train", "val"):
        directory = root / split
        found = _class_directories(directory, f"{split}/<class>/<images>") if split == "val" else classes
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise SpecError(
                f"class directory '{unknown[0]}' is not in train/ (val/ holds only classes train/ has)",
                path=str(directory / unknown[0]),
            )
        paths, labels = [], []
        for label, name in enumerate(classes):
            if name in found:
                files = _class_files(directory / name)
                paths += files
                labels += [label] * len(files)
        splits[split] = FileSplit(paths, labels, channels)
    return Source(str(root), classes, splits["train"], splits["val"], center_crop=True)


def check_classes(source: Source, outputs: int, *, path: str, spec: str = "the spec") -> None:
    """The data's class count is the network's output count: checked before a run or a search writes anything."""
    found = len(source.classes)
    if found != outputs:
        raise SpecError(
            f"{source.name} has {found} classes but the network has {outputs} outputs",
            path=path,
            hint=f"give {spec} head {{ classes = {found} }}",
        )


def open_source(data: str, channels: int) -> Source:
    """``builtin:digits`` or an ImageFolder-style directory."""
    if data.startswith(BUILTIN_PREFIX):
        if data != "builtin:digits":
            raise SpecError("unknown built-in data set; available: builtin:digits", path=data)
        return digits(channels)
    root = Path(data)
    if not root.is_dir():
        raise SpecError("data directory not found (or give builtin:digits)", path=data)
    return image_folder(root, channels)


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 or float (C, H, W) -> float (C, size, size) in [0, 1], bilinear, antialiased when shrinking."""
    x = image.float()[None] / 255.0 if image.dtype == torch.uint8 else image.float()[None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def random_crop_box(height: int, width: int, scale: float, rng: random.Random) -> tuple[int, int, int, int]:
    """Inception/automl random-resized crop: area in [scale, 1] of the image, aspect in [3/4, 4/3] (log-uniform),
    10 attempts, else the whole image. Returns (top, left, height, width)."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(scale, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    return 0, 0, height, width


def train_view(image: torch.Tensor, size: int, *, scale: float, flip: bool, rng: random.Random) -> torch.Tensor:
    """One training image: random-resized crop, resize to ``size``, random horizontal flip."""
    top, left, h, w = random_crop_box(image.shape[-2], image.shape[-1], scale, rng)
    out = resize(image[:, top : top + h, left : left + w], size)
    return out.flip(-1) if flip and rng.random() < 0.5 else out


def eval_view(image: torch.Tensor, size: int, *, center_crop: bool) -> torch.Tensor:
    """One evaluation image: automl's centre crop (or the whole image), resized to ``size``."""
    if center_crop:
        height, width = image.shape[-2:]
        side = int(size / (size + EVAL_CROP_PADDING) * min(height, width))
        top, left = (height - side + 1) // 2, (width - side + 1) // 2
        image = image[:, top : top + side, left : left + side]
    return resize(image, size)


def image_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator for one image in one epoch: the same in every process and every resumed run."""
    return random.Random(f"specdsl-train:{seed}:{epoch}:{index}")


class TrainImages(torch.utils.data.Dataset):
    """The train split at one stage's size, for one epoch: item i is (image in [0, 1], label). Picklable,
    so DataLoader workers can decode and crop."""

    def __init__(self, split: Split, *, size: int, epoch: int, seed: int, scale: float, flip: bool) -> None:
        self.split, self.size, self.epoch, self.seed, self.scale, self.flip = split, size, epoch, seed, scale, flip

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = image_rng(self.seed, self.epoch, index)
        view = train_view(self.split.image(index), self.size, scale=self.scale, flip=self.flip, rng=rng)
        return view, self.split.labels[index]


class EvalImages(torch.utils.data.Dataset):
    def __init__(self, source: Source, size: int) -> None:
        self.split, self.size, self.center_crop = source.held_out, size, source.center_crop

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return eval_view(self.split.image(index), self.size, center_crop=self.center_crop), self.split.labels[index]


Batch = tuple[torch.Tensor, torch.Tensor]  # images (N, C, H, W) in [0, 1], labels (N,)


@dataclass(frozen=True)
class _Failed:
    """A `SpecError` raised in a DataLoader worker, carried back as data (the loader would re-raise it with the
    worker's traceback folded into the message)."""

    message: str
    path: str | None

    def error(self) -> SpecError:
        return SpecError(self.message, path=self.path)


class _Guarded(torch.utils.data.Dataset):
    """``dataset`` with its diagnostics returned as `_Failed` instead of raised (for worker processes)."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except SpecError as error:
            return _Failed(error.message, error.path)


def _collate(items: list[Any]) -> Batch | _Failed:
    failed = [item for item in items if isinstance(item, _Failed)]
    if failed:
        return failed[0]
    images, labels = zip(*items, strict=True)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def batches(dataset: torch.utils.data.Dataset, index_batches: Sequence[Sequence[int]], workers: int) -> Iterator[Batch]:
    """Batches of ``dataset`` in the given order (images in [0, 1], labels), decoded by ``workers`` processes.
    An image that cannot be decoded is the `SpecError` naming it, from a worker as from this process."""
    if workers == 0:
        for indices in index_batches:
            yield _collate([dataset[i] for i in indices])  # type: ignore[misc]
        return
    loader = torch.utils.data.DataLoader(
        _Guarded(dataset),
        batch_sampler=index_batches,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    for batch in loader:
        if isinstance(batch, _Failed):
            raise batch.error()
        yield batch


def eval_batches(
    source: Source, size: int, batch_size: int, workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The held-out split in order, at ``size``, as (images in [0, 1], labels)."""
    count = len(source.held_out)
    order = [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]
    return batches(EvalImages(source, size), order, workers)


class Normalize:
    """(x - mean) / std per channel, with the network's own normalization (from the lowering)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu") -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
