"""RandAugment and mixup as google/automl's efficientnetv2 applies them, on float batches in [0, 1].

RandAugment (automl autoaugment.py, ``distort_image_with_randaugment``): each of ``layers`` rounds
picks one of 16 operations per image, uniformly with replacement, and applies it at the shared
``magnitude`` level L (automl's scale: 10 is its nominal maximum; the V2 recipes run to 15-25 and the
level arguments simply extrapolate). The level arguments are automl's ``level_to_arg``:

==============  ==========================================  =========================================
operation       argument at level L                          implementation
==============  ==========================================  =========================================
AutoContrast    -                                           per-channel min/max stretch
Equalize        -                                           ``kornia.enhance.equalize``
Invert          -                                           1 - x
Rotate          +-30 * L/10 degrees                         ``kornia`` rotation matrix + warp (nearest)
Posterize       keep int(4 * L/10) bits (<= 8)              integer shift on 0-255 (higher L: weaker)
Solarize        invert pixels >= int(256 * L/10) / 255      (higher L: weaker; L >= 10 is a no-op)
SolarizeAdd     + int(110 * L/10) / 255 below 128 / 255
Color           blend with grayscale, factor 1.8 * L/10 + 0.1
Contrast        blend with mean gray, factor 1.8 * L/10 + 0.1
Brightness      blend with black, factor 1.8 * L/10 + 0.1
Sharpness       blend with 3x3 smoothing, 1.8 * L/10 + 0.1  ``kornia.enhance.sharpness`` (same kernel)
ShearX/Y        +-0.3 * L/10 shear factor                   ``kornia.geometry.warp_affine`` (nearest)
TranslateX/Y    +-100 * L/10 pixels                         ``kornia.geometry.warp_affine`` (nearest)
Cutout          grey square of half-side int(40 * L/10)     random centre
==============  ==========================================  =========================================

Pixels uncovered by a geometric operation and Cutout's square are grey 128/255, as automl's ``replace``.
kornia's own ``RandAugment(n, m)`` is not used: its ``m`` must lie in (0, 30) with op magnitudes
``low + (high - low) * m / 30`` (m = 3 L would match automl's linear ops only below L = 10), it draws one
set of operations per batch rather than per image, and its brightness (additive), contrast (a plain
multiply), color (HSV saturation), shear (degrees x 180) and solarize-add differ from automl's, which
has no counterpart there for Cutout. docs/training.md tabulates the mapping.

Differences from automl that remain: images stay float between operations (automl rounds to uint8),
and Contrast blends with the mean grey level as PIL does (automl's code uses pixel-count / 256).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from kornia.enhance import equalize, sharpness
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

GREY = 128.0 / 255.0
Op = Callable[[torch.Tensor, float, torch.Tensor, torch.Generator], torch.Tensor]


def _enhance_factor(level: float) -> float:
    return level / 10.0 * 1.8 + 0.1


def _blend(degenerate: torch.Tensor, image: torch.Tensor, factor: float) -> torch.Tensor:
    """automl's blend: degenerate + factor * (image - degenerate), clipped to [0, 1]."""
    return (degenerate + factor * (image - degenerate)).clamp(0.0, 1.0)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma as tf.image.rgb_to_grayscale (0.2989, 0.587, 0.114), broadcast back to the channels."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True).expand_as(x)
    weights = x.new_tensor([0.2989, 0.5870, 0.1140]).reshape(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True).expand_as(x)


def _warp(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Source -> destination pixel affine ``matrix`` (N, 2, 3), nearest sampling, grey where uncovered."""
    fill = x.new_full((x.shape[1],), GREY)
    return warp_affine(x, matrix, x.shape[-2:], mode="nearest", padding_mode="fill", fill_value=fill)


def _warp_entry(x: torch.Tensor, row: int, col: int, value: torch.Tensor) -> torch.Tensor:
    """Warp by the identity affine map with entry (row, col) set to ``value`` per image: a shear or a shift."""
    matrix = torch.eye(2, 3, dtype=x.dtype, device=x.device).repeat(len(x), 1, 1)
    matrix[:, row, col] = value.to(x.dtype)
    return _warp(x, matrix)


def auto_contrast(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    stretched = (x - low) / (high - low).clamp_min(1e-12)
    return torch.where(high > low, stretched, x)


def equalize_op(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return equalize(x)


def invert(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return 1.0 - x


def rotate(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    height, width = x.shape[-2:]
    center = x.new_tensor([[(width - 1) / 2, (height - 1) / 2]]).expand(len(x), 2)
    angle = sign.to(x.dtype) * (level / 10.0 * 30.0)
    return _warp(x, get_rotation_matrix2d(center, angle, torch.ones_like(center)))


def posterize(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    shift = max(8 - int(level / 10.0 * 4), 0)
    pixels = (x * 255.0).round().clamp(0, 255).to(torch.uint8)
    return ((pixels >> shift) << shift).to(x.dtype) / 255.0


def solarize(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    threshold = int(level / 10.0 * 256)
    return torch.where(x * 255.0 < threshold, x, 1.0 - x)


def solarize_add(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    added = (x + int(level / 10.0 * 110) / 255.0).clamp(0.0, 1.0)
    return torch.where(x * 255.0 < 128, added, x)


def color(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return _blend(_grey(x), x, _enhance_factor(level))


def contrast(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mean = _grey(x)[:, :1].mean((2, 3), keepdim=True)
    return _blend(mean.expand_as(x), x, _enhance_factor(level))


def brightness(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return _blend(torch.zeros_like(x), x, _enhance_factor(level))


def sharpness_op(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    if min(x.shape[-2:]) < 3:
        return x
    return sharpness(x, _enhance_factor(level)).clamp(0.0, 1.0)


# automl (tfa.image.transform) samples ShearX's input at (x + s*y, y) and TranslateX's at (x + p, y); the
# source -> destination matrices below are their inverses, hence the minus signs.


def shear_x(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return _warp_entry(x, 0, 1, -sign * (level / 10.0 * 0.3))


def shear_y(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return _warp_entry(x, 1, 0, -sign * (level / 10.0 * 0.3))


def translate_x(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return _warp_entry(x, 0, 2, -sign * (level / 10.0 * 100.0))


def translate_y(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return _warp_entry(x, 1, 2, -sign * (level / 10.0 * 100.0))


def cutout(x: torch.Tensor, level: float, sign: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A grey square [cy - pad, cy + pad) x [cx - pad, cx + pad), clipped to the image, centre uniform."""
    pad = int(level / 10.0 * 40)
    height, width = x.shape[-2:]
    cy = torch.randint(0, height, (len(x), 1, 1), generator=g)
    cx = torch.randint(0, width, (len(x), 1, 1), generator=g)
    rows, cols = torch.arange(height).reshape(1, -1, 1), torch.arange(width).reshape(1, 1, -1)
    inside = (rows >= cy - pad) & (rows < cy + pad) & (cols >= cx - pad) & (cols < cx + pad)
    return torch.where(inside[:, None].to(x.device), x.new_tensor(GREY), x)


#: automl's ``available_ops``, in its order.
OPS: dict[str, Op] = {
    "AutoContrast": auto_contrast,
    "Equalize": equalize_op,
    "Invert": invert,
    "Rotate": rotate,
    "Posterize": posterize,
    "Solarize": solarize,
    "Color": color,
    "Contrast": contrast,
    "Brightness": brightness,
    "Sharpness": sharpness_op,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
    "Cutout": cutout,
    "SolarizeAdd": solarize_add,
}


def rand_augment(x: torch.Tensor, layers: int, magnitude: float, generator: torch.Generator) -> torch.Tensor:
    """``layers`` rounds; each image draws one operation per round and, for the signed ones, a sign."""
    ops = list(OPS.values())
    for _ in range(layers):
        choice = torch.randint(len(ops), (len(x),), generator=generator)
        sign = torch.randint(0, 2, (len(x),), generator=generator) * 2 - 1
        out = x.clone()
        for index in choice.unique().tolist():
            rows = (choice == index).nonzero().flatten()
            out[rows.to(x.device)] = ops[index](x[rows.to(x.device)], magnitude, sign[rows].to(x.device), generator)
        x = out
    return x


def mixup(
    x: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """automl's mixup: per image w ~ Beta(alpha, alpha), w = max(w, 1 - w), mixed with the batch reversed.

    ``targets`` are class probabilities (N, classes); the Beta draws come from numpy seeded by ``generator``.
    """
    if alpha <= 0.0:
        return x, targets
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    weight = np.random.default_rng(seed).beta(alpha, alpha, size=len(x))
    w = torch.from_numpy(np.maximum(weight, 1.0 - weight)).to(x.device, x.dtype)
    images = x * w.reshape(-1, 1, 1, 1) + x.flip(0) * (1.0 - w.reshape(-1, 1, 1, 1))
    return images, targets * w[:, None] + targets.flip(0) * (1.0 - w[:, None])
