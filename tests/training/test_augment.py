"""RandAugment's operations at google/automl's level arguments, and its mixup, on hand-made images."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from specdsl.training.augment import GREY, OPS, mixup, rand_augment  # noqa: E402


def run(name: str, x: torch.Tensor, level: float, sign: int = 1) -> torch.Tensor:
    return OPS[name](x, level, torch.full((len(x),), sign), torch.Generator().manual_seed(0))


def dots() -> torch.Tensor:
    """A 9x9 black image with two bright pixels, at (row 4, col 4) and (row 2, col 4)."""
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4], x[0, 0, 2, 4] = 1.0, 0.8
    return x


def bright(x: torch.Tensor) -> list[tuple[int, int]]:
    return [(int(r), int(c)) for r, c in zip(*torch.nonzero(x[0, 0] > 0.75, as_tuple=True), strict=True)]


def test_geometry_follows_automls_transforms() -> None:
    """TranslateX by p samples input (x + p, y); ShearX by s samples (x + s*y, y); nearest, grey outside."""
    assert bright(run("TranslateX", dots(), 0.2)) == [(2, 2), (4, 2)]  # 0.2 / 10 * 100 = 2 px
    assert bright(run("TranslateX", dots(), 0.2, sign=-1)) == [(2, 6), (4, 6)]
    assert bright(run("TranslateY", dots(), 0.2)) == [(0, 4), (2, 4)]
    assert bright(run("ShearX", dots(), 100 / 3)) == [(2, 2), (4, 0)]  # s = 0.3 * 10/3 = 1
    assert bright(run("ShearY", dots(), 100 / 3)) == [(0, 4)]  # rows 2 and 4 move up by col = 4: (−2) off-image
    shifted = run("TranslateX", torch.zeros(1, 1, 9, 9), 0.2)
    assert torch.equal(shifted[0, 0, :, 7:], torch.full((9, 2), GREY)) and shifted[0, 0, :, :7].eq(0).all()
    quarter = run("Rotate", dots(), 30.0)  # 90 degrees about the centre (4, 4): (2, 4) -> (4, 2) or (4, 6)
    assert bright(quarter) in ([(4, 2), (4, 4)], [(4, 4), (4, 6)])


def test_pixel_operations_use_automls_level_arguments() -> None:
    x = torch.tensor([0, 40, 100, 127, 128, 200, 255], dtype=torch.float32).reshape(1, 1, 1, 7) / 255
    # Posterize at level 5 keeps int(4 * 0.5) = 2 bits; at 15 keeps 6; higher levels are weaker, as in automl.
    assert (run("Posterize", x, 5.0) * 255).round().flatten().tolist() == [0, 0, 64, 64, 128, 192, 192]
    assert (run("Posterize", x, 15.0) * 255).round().flatten().tolist() == [0, 40, 100, 124, 128, 200, 252]
    # Solarize at level 5 inverts pixels >= int(256 * 0.5) = 128; at level 10 the threshold is 256: nothing.
    assert (run("Solarize", x, 5.0) * 255).round().flatten().tolist() == [0, 40, 100, 127, 127, 55, 0]
    assert torch.equal(run("Solarize", x, 10.0), x)
    # SolarizeAdd at level 5 adds int(110 * 0.5) = 55 below 128 only.
    assert (run("SolarizeAdd", x, 5.0) * 255).round().flatten().tolist() == [55, 95, 155, 182, 128, 200, 255]
    # Brightness: factor 1.8 * L/10 + 0.1 times the image, clipped; level 5 is the identity (factor 1).
    torch.testing.assert_close(run("Brightness", x, 5.0), x)
    torch.testing.assert_close(run("Brightness", x, 15.0), (x * 2.8).clamp(0, 1))
    torch.testing.assert_close(run("Contrast", x, 0.0), torch.full_like(x, x.mean().item()) * 0.9 + 0.1 * x)
    rgb = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    torch.testing.assert_close(run("Color", rgb, 0.0), 0.9 * 0.2989 + 0.1 * rgb)  # 0.1 of the way from grey
    assert torch.equal(run("Invert", x, 7.0), 1 - x)


def test_cutout_is_a_grey_square_of_automls_size() -> None:
    out = run("Cutout", torch.zeros(4, 3, 64, 64), 5.0)  # half-side int(40 * 0.5) = 20
    for image in out:
        grey = image[0].eq(GREY)
        rows, cols = grey.any(1).nonzero().flatten(), grey.any(0).nonzero().flatten()
        assert 0 < len(rows) <= 40 and 0 < len(cols) <= 40
        assert grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()


def test_rand_augment_draws_per_image_from_its_generator_only() -> None:
    x = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    state = torch.random.get_rng_state()
    first = rand_augment(x, 2, 9.0, torch.Generator().manual_seed(5))
    again = rand_augment(x, 2, 9.0, torch.Generator().manual_seed(5))
    assert torch.equal(first, again) and torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(first, rand_augment(x, 2, 9.0, torch.Generator().manual_seed(6)))
    changed = (first - x).abs().flatten(1).amax(1) > 0
    assert changed.sum() > 0 and first.min() >= 0 and first.max() <= 1


def test_mixup_is_automls() -> None:
    """Per-image weights w >= 0.5 from Beta(alpha, alpha), mixed with the reversed batch, labels alike."""
    x = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1).expand(6, 3, 2, 2)
    targets = torch.eye(6)
    images, mixed = mixup(x, targets, 0.4, torch.Generator().manual_seed(0))
    w = mixed.diagonal()
    assert (w >= 0.5).all() and (w < 1).any()
    torch.testing.assert_close(mixed.sum(1), torch.ones(6))
    torch.testing.assert_close(images[:, 0, 0, 0], w * x[:, 0, 0, 0] + (1 - w) * x.flip(0)[:, 0, 0, 0])
    assert mixup(x, targets, 0.0, torch.Generator())[0] is x
