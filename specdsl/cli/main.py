"""The `specdsl` console script: argument parsing, dispatch and exit codes.

Exit codes: 0 success, 2 bad input (a located diagnostic, no traceback; a misused flag too: one
``error: specdsl COMMAND: ...`` line and a hint, no usage block), 1 internal error (a bug: the
traceback is printed so it can be reported), 128 + N after signal N: SIGINT, SIGTERM and SIGHUP
all stop a command the same way (staged output removed, nothing half-written, exit 130, 143, 129).
A diagnostic that cannot itself be printed (stderr on a full disk) still exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from specdsl import __version__
from specdsl.cli import build_flags, commands, grid, predict, train, weights
from specdsl.cli import features as cli_features
from specdsl.output import files

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2

_EPILOG = """examples:
  specdsl list
  specdsl check specs/*.spec
  specdsl info specs/v2_s.spec
  specdsl scale specs/b0.spec --phi 3 -o my_b3.spec
  specdsl build specs/b0.spec --backend torch -o build/b0
  specdsl build specs/b0.spec --backend onnx -o build/b0-onnx --weights b0.safetensors
  specdsl plot v2_s -o v2_s.png
  specdsl train specs/digits_tiny.spec -o runs/digits
  specdsl predict runs/digits images/
  specdsl grid specs/digits_tiny.spec -o grids/digits --alpha 1:2:0.2 --beta 1:1.4:0.1 --gamma 1:1.5:0.25
"""


class UsageError(Exception):
    """A flag argparse refuses: reported as one diagnostic line, exit 2."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.message = prog, message


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors raised (and printed by `main` as one line) instead of a usage block and exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def _say(text: str) -> None:
    """Print a diagnostic on stderr; if stderr itself cannot be written (a full disk), drop it quietly so the exit
    code still tells (and Python's own flush at exit does not fail a second time)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives until exit


def _spec_options() -> argparse.ArgumentParser:
    """Options of every command that loads specs."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="DIR",
        help="also let `extends` reach specs under DIR (repeatable; see docs/language.md)",
    )
    return common


def _output_options(what: str) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--force", action="store_true", help=f"replace existing {what} (nothing else is touched)")
    return common


_JSON_HELP = "print JSON (numbers as numbers)"


def parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="specdsl",
        description="Declarative architecture-spec compiler for EfficientNet-family ConvNets.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"specdsl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    specs = _spec_options()
    _add_check(sub, specs)
    _add_list(sub)
    _add_info(sub, specs)
    _add_scale(sub, specs)
    _add_fmt(sub, specs)
    _add_schema(sub)
    _add_build(sub, specs)
    train.add_parser(sub)
    predict.add_parser(sub, [specs])
    grid.add_parser(sub, [specs])
    weights.add_parser(sub, [specs])
    _add_plot(sub, specs)
    return parser


def _add_check(sub: Any, specs: argparse.ArgumentParser) -> None:
    check = sub.add_parser(
        "check", parents=[specs], help="parse and validate specs", description="Parse and validate spec files."
    )
    check.add_argument("specs", nargs="+", metavar="SPEC")
    check.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    check.add_argument("--json", action="store_true", help=_JSON_HELP)
    check.set_defaults(run=commands.cmd_check)


def _add_list(sub: Any) -> None:
    listing = sub.add_parser(
        "list", help="the shipped spec library", description="List the shipped specs (usable by name: b0, v2_s)."
    )
    listing.add_argument("--json", action="store_true", help=_JSON_HELP)
    listing.set_defaults(run=commands.cmd_list)


def _add_info(sub: Any, specs: argparse.ArgumentParser) -> None:
    info = sub.add_parser(
        "info",
        parents=[specs, _output_options("the --plot file")],
        help="per-stage table of blocks, channels, params and MACs",
        description="Analyse a spec from its IR.",
    )
    info.add_argument("spec", metavar="SPEC", help="a spec file, a shipped spec's name, or - for stdin")
    info.add_argument("--json", action="store_true", help="print the full report as JSON")
    info.add_argument("--resolution", type=int, help="analyse at this input size (default: the spec's)")
    info.add_argument("--batch-size", type=int, default=1, help="batch size for activation memory (default: 1)")
    info.add_argument(
        "--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"], help="default: float32"
    )
    info.add_argument("--schedule", action="store_true", help="also give the progressive-learning schedule")
    info.add_argument("--layers", action="store_true", help="also give every layer of the lowered network")
    info.add_argument("--plot", metavar="FILE.svg", help="also draw params and MACs per stage as an SVG chart")
    cli_features.add_arguments(info, indices=True)  # the tap table of a backbone (docs/features.md)
    info.set_defaults(run=commands.cmd_info)


def _add_scale(sub: Any, specs: argparse.ArgumentParser) -> None:
    scale = sub.add_parser(
        "scale",
        parents=[specs, _output_options("an existing output file")],
        help="derive a scaled variant as a standalone spec",
        description=(
            "Derive a scaled variant. Give --phi, or explicit --width/--depth/--resolution, or --target-macs. "
            "--width and --depth multiply the spec's current multipliers; resolutions are pixels. Without -o the "
            "spec goes to stdout and the comparison table to stderr. Without SPEC (or with -), the spec is read "
            "from stdin: `specdsl fmt b0 | specdsl scale --phi 3`."
        ),
    )
    scale.add_argument(
        "spec", metavar="SPEC", nargs="?", help="a spec file, a shipped spec's name (b0, v2_s), or - for stdin"
    )
    mode = scale.add_argument_group("scaling (choose one way)")
    mode.add_argument("--phi", type=float, help="compound coefficient: depth alpha^phi, width beta^phi, res gamma^phi")
    mode.add_argument("--width", type=float, help="width multiplier")
    mode.add_argument("--depth", type=float, help="depth multiplier")
    mode.add_argument("--resolution", type=int, help="evaluation resolution, pixels")
    mode.add_argument("--target-macs", type=commands.parse_count, help="MAC budget, e.g. 2e9 or 2G: solves for phi")
    extra = scale.add_argument_group("variant settings")
    extra.add_argument("--train-resolution", type=int, help="training resolution, pixels")
    extra.add_argument("--dropout", type=float, help="head dropout of the new variant")
    extra.add_argument("--name", help="name of the new variant (default: the base name)")
    scale.add_argument("-o", "--output", help="write the spec here (default: stdout)")
    scale.add_argument("--json", action="store_true", help="print the comparison (and the spec, without -o) as JSON")
    scale.set_defaults(run=commands.cmd_scale)


def _add_fmt(sub: Any, specs: argparse.ArgumentParser) -> None:
    fmt = sub.add_parser(
        "fmt", parents=[specs], help="canonical formatting", description="Print specs in canonical layout."
    )
    fmt.add_argument("specs", nargs="+", metavar="SPEC")
    how = fmt.add_mutually_exclusive_group()
    how.add_argument("-w", "--write", action="store_true", help="rewrite files in place")
    how.add_argument("--check", action="store_true", help="exit 2 if any file is not canonical")
    fmt.set_defaults(run=commands.cmd_fmt)


def _add_schema(sub: Any) -> None:
    schema = sub.add_parser("schema", help="print the IR's JSON Schema", description="Print a JSON Schema.")
    schema.add_argument("--document", action="store_true", help="the spec document's schema instead of the IR's")
    schema.set_defaults(run=commands.cmd_schema)


def _add_build(sub: Any, specs: argparse.ArgumentParser) -> None:
    """`build`'s own flags; the backend flags come from the backends' contract (`specdsl.cli.build_flags`)."""
    build = sub.add_parser(
        "build",
        parents=[specs, _output_options("the files this build writes")],
        help="emit a model for a backend",
        description=(
            "Translate a spec for a backend and write the model files into a directory (created if missing; "
            "an existing directory is fine). Files already there are replaced only with --force, and only the "
            "ones the build writes; all files are written or none."
        ),
    )
    build.add_argument("spec", metavar="SPEC", help="a spec file, a shipped spec's name, or - for stdin")
    build.add_argument("--backend", required=True, help=build_flags.backend_help())
    build.add_argument("-o", "--output", help="output directory (default: build/<name>)")
    build.add_argument("--weights", help="canonical safetensors weights to load (default: seeded random init)")
    build.add_argument("--seed", type=int, default=0, help="initialisation seed (default: 0)")
    build.add_argument("--json", action="store_true", help="print the report and the files written as JSON")
    build_flags.add_backend_flags(build)
    build.set_defaults(run=commands.cmd_build)


def _add_plot(sub: Any, specs: argparse.ArgumentParser) -> None:
    plot = sub.add_parser(
        "plot",
        parents=[specs, _output_options("the output file")],
        help="draw the architecture (or the scaling curve) as svg, png or pdf",
        description=(
            "Draw a block-level architecture diagram: the stem, one box per stage (kind, kernel, expansion, SE, "
            "channels, feature-map size) drawn to scale by MACs or params, then the head. With --scaling, draw "
            "params and MACs against phi for the spec's scaling rule, with the shipped variants marked. "
            "The format follows the file name: .svg, .png or .pdf. Needs matplotlib: pip install 'specdsl[plot]'."
        ),
    )
    plot.add_argument("spec", metavar="SPEC", help="a spec file, a shipped spec's name, or - for stdin")
    plot.add_argument("-o", "--output", required=True, metavar="FILE", help="arch.svg, arch.png or arch.pdf")
    plot.add_argument("--scaling", action="store_true", help="draw the scaling curve instead of the architecture")
    plot.add_argument("--by", choices=["macs", "params"], default="macs", help="box widths to scale (default: macs)")
    plot.add_argument("--json", action="store_true", help="print what was drawn as JSON")
    plot.set_defaults(run=commands.cmd_plot)


def main(argv: Sequence[str] | None = None) -> int:
    # A closed stdout or stderr (`specdsl list >&-`): Python has None there; its output is discarded, as if
    # sent to /dev/null, and the exit code still tells.
    sys.stdout = sys.stdout or open(os.devnull, "w")  # noqa: SIM115 - lives until exit
    sys.stderr = sys.stderr or open(os.devnull, "w")  # noqa: SIM115
    try:
        with files.stop_signals():
            code = _run(argv)
            stopped = files.stop_received()  # a stop whose exception Python swallowed (see files.stop_signals)
            return code if stopped is None or code != EXIT_OK else 128 + stopped
    except files.Terminated as stop:  # in the command, in its error report, or after it returned: all alike
        return 128 + stop.signum
    except KeyboardInterrupt:
        return 130


def _run(argv: Sequence[str] | None) -> int:
    from specdsl.backends import BackendUnavailable
    from specdsl.errors import SpecError

    try:
        args, unknown = parser().parse_known_args(argv)
        if unknown:  # named by the command they were given to (argparse names only `specdsl`)
            raise UsageError(f"specdsl {args.command}", f"unrecognized arguments: {' '.join(unknown)}")
        code = args.run(args)
        sys.stdout.flush()  # a full disk or closed pipe behind stdout is reported here, not at exit
        return code
    except UsageError as error:
        _say(f"error: {error.prog}: {error.message}\n  hint: see `{error.prog} --help`")
        return EXIT_BAD_INPUT
    except (SpecError, BackendUnavailable) as error:
        _say(str(error) if isinstance(error, SpecError) else f"error: {error}")
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `specdsl info b0 | head -1`: not an error; keep Python quiet at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as error:  # writing to stdout/stderr redirected to a full or failing file
        try:
            sys.stdout.flush()
        except (OSError, ValueError):  # stdout is what failed: drop its buffer, or the flush at exit fails again
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        where = f"{error.filename}: " if error.filename else ""
        _say(f"error: {where}{error.strerror or error}")
        return EXIT_BAD_INPUT
    except Exception:  # a bug: show it
        import traceback

        with contextlib.suppress(OSError, ValueError):
            traceback.print_exc()
        _say("specdsl: internal error (please report it with the command above)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
