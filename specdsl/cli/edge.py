"""`specdsl build --quantize/--calibration*`: the flags checked against the backend, the calibration data read
before anything is written, and the measured agreement printed (docs/edge.md)."""

from __future__ import annotations

import argparse
from typing import Any

from specdsl.cli import inputs
from specdsl.errors import SpecError
from specdsl.ir import ModelIR


def calibration(args: argparse.Namespace, backend: Any, ir: ModelIR, options: dict[str, Any]) -> Any:
    """The `specdsl.calibration.Calibration` the build quantizes with, or None; every misuse one diagnostic."""
    from specdsl import calibration as data
    from specdsl.training.calibration import load

    extras = [
        flag
        for flag, value in (
            ("--calibration", args.calibration),
            ("--calibration-images", args.calibration_images),
            ("--calibration-method", args.calibration_method),
        )
        if value is not None
    ]
    if args.quantize is None:
        if extras or args.int8_io:
            raise SpecError(f"{(extras or ['--int8-io'])[0]} is for a quantized build: add --quantize int8")
        return None
    check = getattr(backend, "check_quantize", None)
    if check is None:  # `build_flags.given_options` refuses --quantize for a backend without it; a safety net
        raise SpecError(f"the {args.backend} backend cannot quantize")
    try:
        check(calibrated=args.calibration is not None, method=args.calibration_method, **options)
    except ValueError as error:
        raise SpecError(str(error), path=f"--quantize {args.quantize}") from None
    if args.calibration is None:
        return None  # float16: nothing to calibrate
    count = data.DEFAULT_IMAGES if args.calibration_images is None else args.calibration_images
    inputs.check_range("--calibration-images", count, 1, data.MAX_IMAGES)
    return load(ir, args.calibration, count=count, method=args.calibration_method or "minmax")


def measured_lines(measured: dict[str, Any]) -> list[str]:
    """What the backend measured on the held-out images, for people."""
    if not measured:
        return []
    line = f"quantized vs fp32 on {measured['images']} held-out images: top-1 agreement {measured['agreement']:.2%}"
    if "accuracy_fp32" in measured:
        line += f", accuracy {measured['accuracy_fp32']:.2%} fp32, {measured['accuracy_quantized']:.2%} quantized"
    return [line, ""]
