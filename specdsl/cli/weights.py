"""``specdsl weights import|inspect``: downloaded checkpoints into canonical weights (`specdsl.interop.files`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from specdsl.cli import inputs
from specdsl.errors import SpecError
from specdsl.output.files import preflight, staged_output

_EXAMPLES = """examples:
  specdsl weights inspect model.safetensors
  specdsl weights import b0 model.safetensors -o b0.safetensors           # timm / Hugging Face
  specdsl weights import b0 efficientnet-b0-355c32eb.pth -o b0.safetensors  # efficientnet-pytorch
  specdsl weights import v2_s efficientnetv2-s.h5 -o v2_s.safetensors      # keras.applications
  specdsl weights import b0 efficientnet_b0.pth --from torchvision -o b0.safetensors --skip-head
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    from specdsl.interop import FORMATS

    weights = sub.add_parser(
        "weights",
        help="import downloaded checkpoints (timm, efficientnet-pytorch, keras, torchvision) or inspect them",
        description="Read a downloaded checkpoint into canonical weights, or say what it is (docs/weights.md).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    imported = action.add_parser(
        "import",
        parents=parents,
        help="write canonical weights for SPEC from FILE",
        description=(
            "Match every tensor of SPEC's lowering exactly once in FILE (by the format's name rule and shape) "
            "and write them as one canonical safetensors file, with the source format, FILE's sha256, the "
            "preprocessing and the network hash in its metadata. Pickled files are read with "
            "torch.load(weights_only=True) only."
        ),
    )
    imported.add_argument("spec", metavar="SPEC", help="a spec file or a shipped spec's name")
    imported.add_argument("file", metavar="FILE", help=".safetensors, .bin, .pth, .pt, .h5 or .weights.h5")
    imported.add_argument("--from", dest="format", choices=FORMATS, help="the file's format (default: detected)")
    imported.add_argument("-o", "--output", required=True, metavar="OUT.safetensors", help="the file to write")
    imported.add_argument("--force", action="store_true", help="replace OUT if it exists")
    imported.add_argument(
        "--skip-head", action="store_true", help="leave the classifier to the trainer (another class count)"
    )
    imported.set_defaults(run=cmd_import)
    inspected = action.add_parser(
        "inspect",
        help="the format, tensor and parameter counts of FILE and the shipped specs it fits",
        description="Say what a weights file is and which shipped spec(s) its tensors fit exactly.",
    )
    inspected.add_argument("file", metavar="FILE")
    inspected.add_argument("--from", dest="format", choices=FORMATS, help="the file's format (default: detected)")
    inspected.add_argument("--json", action="store_true", help="print JSON")
    inspected.set_defaults(run=cmd_inspect)


def _blamed(error: Exception) -> SpecError:
    return SpecError(str(error))


def _files() -> Any:
    """`specdsl.interop.files`, or a one-line diagnostic where numpy or safetensors is missing (the core install)."""
    try:
        from specdsl.interop import files
    except ImportError as error:
        raise SpecError(f"reading weights needs {error.name}: pip install 'specdsl[torch]'") from None
    return files


def cmd_import(args: argparse.Namespace) -> int:
    import_file = _files().import_file
    from specdsl import weights

    ir = inputs.load(args.spec, args.root)
    out = Path(args.output)
    preflight(out.parent, [Path(out.name)], force=args.force)
    from specdsl.interop._common import HeadMismatch

    try:
        state, metadata = import_file(ir, args.file, args.format, skip_head=args.skip_head)
    except HeadMismatch as error:
        raise SpecError(str(error), hint="pass --skip-head to leave the classifier to the trainer") from None
    except weights.WeightsError as error:
        raise _blamed(error) from None
    with staged_output(out.parent, force=args.force, shown=str(out)) as staging:
        weights.save(state, staging.path / out.name, ir=ir, metadata=metadata)
    print(f"imported {len(state)} tensors ({metadata['source.format']} format) into {ir.name}")
    if args.skip_head:
        print("the classifier is freshly initialised (--skip-head): train it with `specdsl train --init`")
    print(f"wrote {out}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    inspect_file = _files().inspect_file
    from specdsl.weights import WeightsError

    try:
        found = inspect_file(args.file, args.format)
    except WeightsError as error:
        raise _blamed(error) from None
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"{found['file']}: {found['format']} format ({found['container']})")
    print(f"  {found['tensors']} tensors, {found['params']:,} parameters")
    if found["fits"]:
        print(f"  fits: {', '.join(found['fits'])}")
    else:
        print("  fits no shipped spec exactly (a spec of your own may fit: `specdsl weights import SPEC FILE`)")
    sys.stdout.flush()
    return 0
