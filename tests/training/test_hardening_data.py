"""Hardening of data folders: only regular files, a pixel limit from the header, one line naming the file."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")

from PIL import Image

from specdsl.errors import SpecError
from specdsl.training.data import MAX_IMAGE_PIXELS, TrainImages, batches, open_source
from tests.conftest import SPECS, listing, one_error_line, run_cli


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` greyscale pixels and holds a few bytes of data: a
    decompression bomb's header (the issue's 20000x20000 file was 236 KB; this one is 64 bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 1000)[:20]
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def write_folder(root: Path, classes: int = 2, size: int = 12) -> None:
    """``classes`` classes of two train and one val image each, all regular PNGs."""
    for index in range(classes):
        for split, count in (("train", 2), ("val", 1)):
            directory = root / split / f"c{index}"
            directory.mkdir(parents=True)
            for number in range(count):
                Image.new("RGB", (size, size), (20 * index, 100, 10 * number)).save(directory / f"{number}.png")


def _truncated(path: Path) -> None:
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    path.write_bytes(path.read_bytes()[:60])  # a valid header, the pixel data cut short


#: A damaged folder: (what to do to a good two-class folder, the file or folder named, a fragment of the message).
DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "20000x20000 png": (
        lambda root: (root / "train/c0/0.png").write_bytes(png_header(20000, 20000)),
        "train/c0/0.png",
        "400,000,000 pixels, over the limit of 36,000,000",
    ),
    "10000x10000 png": (
        lambda root: (root / "val/c1/0.png").write_bytes(png_header(10000, 10000)),
        "val/c1/0.png",
        "100,000,000 pixels, over the limit",
    ),
    "7000x7000 png": (
        lambda root: (root / "train/c1/1.png").write_bytes(png_header(7000, 7000)),
        "train/c1/1.png",
        "7000x7000 = 49,000,000 pixels, over the limit of 36,000,000",
    ),
    "fifo": (lambda root: os.mkfifo(root / "train/c0/x.png"), "train/c0/x.png", "not a regular file (a FIFO)"),
    "broken symlink": (
        lambda root: (root / "train/c0/gone.png").symlink_to(root / "nowhere.png"),
        "train/c0/gone.png",
        "cannot read the image: No such file or directory",
    ),
    "symlink to a fifo": (
        lambda root: (os.mkfifo(root / "pipe"), (root / "val/c0/p.png").symlink_to(root / "pipe")),
        "val/c0/p.png",
        "not a regular file (a FIFO)",
    ),
    "text named png": (
        lambda root: (root / "train/c1/notes.png").write_text("not an image\n"),
        "train/c1/notes.png",
        "not an image",
    ),
    "empty png": (lambda root: (root / "train/c1/empty.jpg").write_bytes(b""), "train/c1/empty.jpg", "not an image"),
    "corrupt png": (
        lambda root: (root / "train/c0/bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64)),
        "train/c0/bad.png",
        "",
    ),
    "empty class folder": (
        lambda root: (root / "train/empty").mkdir(),
        "train/empty",
        "class directory holds no images",
    ),
    "val class not in train": (
        lambda root: (root / "val/extra").mkdir(),
        "val/extra",
        "class directory 'extra' is not in train/",
    ),
    "no class folders": (
        lambda root: [p.rename(root / p.name) for p in (root / "train").iterdir()],
        "train",
        "no class directories",
    ),
    "val folder without train": (
        lambda root: (root / "train").rename(root / "training"),
        "",
        "no 'train' directory beside val/",
    ),
    "no class with two images": (
        lambda root: [(root / "val").rename(root / "v"), *(p.unlink() for p in (root / "train").glob("*/1.png"))],
        "train",
        "no class has the 2 images a held-out split needs",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_folder_is_one_error_naming_the_file(case: str, tmp_path: Path) -> None:
    damage, named, fragment = DAMAGE[case]
    root = tmp_path / "data"
    write_folder(root)
    damage(root)
    with pytest.raises(SpecError) as raised:
        open_source(str(root), channels=3)
    assert raised.value.path == (str(root / named) if named else str(root))
    assert fragment in raised.value.message and "\n" not in str(raised.value)


def test_an_empty_data_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no class directories"):
        open_source(str(tmp_path), channels=3)


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root)
    (root / "train/c0/0.png").rename(tmp_path / "elsewhere.png")
    (root / "train/c0/0.png").symlink_to(tmp_path / "elsewhere.png")
    source = open_source(str(root), channels=3)
    assert source.train.image(0).shape == (3, 12, 12)


def test_hidden_and_non_image_files_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root)
    (root / "train/c0/._0.png").write_bytes(b"\x00\x05\x16\x07 macOS AppleDouble")  # not an image, hidden
    (root / "train/c0/notes.txt").write_text("not an image\n")
    assert len(open_source(str(root), channels=3).train) == 4


def test_the_pixel_limit_is_inclusive(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root)
    (root / "train/c0/0.png").write_bytes(png_header(6000, MAX_IMAGE_PIXELS // 6000))
    open_source(str(root), channels=3)  # the header is within the limit: accepted (decoding it would fail)


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_that_fails_to_decode_is_one_error_from_a_worker_too(workers: int, tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root)
    _truncated(root / "train/c1/0.png")
    source = open_source(str(root), channels=3)  # the header is fine
    dataset = TrainImages(source.train, size=8, epoch=0, seed=0, scale=0.5, flip=True)
    with pytest.raises(SpecError) as raised:
        list(batches(dataset, [[0, 1], [2, 3]], workers))
    assert raised.value.path == str(root / "train/c1/0.png")
    assert raised.value.message.startswith("cannot decode the image: ") and "Traceback" not in raised.value.message


def _train(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        str(SPECS / "digits_tiny.spec"),
        "-o",
        str(out),
        "--data",
        str(data),
        "--set",
        "epochs=3",
        "--stop-at-epoch",
        "1",
        "--threads",
        "1",
        *extra,
    ]


@pytest.mark.parametrize("case", ["20000x20000 png", "fifo", "empty class folder"])
def test_train_on_a_damaged_folder_is_one_line_and_writes_nothing(case: str, tmp_path: Path) -> None:
    damage, named, fragment = DAMAGE[case]
    root = tmp_path / "data"
    write_folder(root, classes=10)
    damage(root)
    before = listing(tmp_path)
    result = run_cli(*_train(root, tmp_path / "run"))
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert line.startswith(f"{root / named}: error: ") and fragment in line, line
    assert listing(tmp_path) == before and not (tmp_path / "run").exists()


def test_train_with_a_class_count_mismatch_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root, classes=3)
    result = run_cli(*_train(root, tmp_path / "run"))
    assert result.returncode == 2
    assert "has 3 classes but the network has 10 outputs" in one_error_line(result.stderr)
    assert not (tmp_path / "run").exists()


def test_train_with_workers_reports_an_undecodable_image_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root, classes=10)
    _truncated(root / "train/c3/1.png")
    result = run_cli(*_train(root, tmp_path / "run", "--workers", "1", "--batch-size", "4"))
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert line.startswith(f"{root / 'train/c3/1.png'}: error: cannot decode the image: "), line
