"""One function per `specdsl` subcommand. Each returns an exit code; user errors raise SpecError.

Every file a command writes goes through `specdsl.output.files` (staged, published atomically, never
clobbering without --force); every table a command prints has a ``--json`` form with numbers as numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from specdsl import api, limits
from specdsl.backends import BACKENDS
from specdsl.cli import build_flags, edge, inputs
from specdsl.cli import features as cli_features
from specdsl.cli.output import layers_table, report_table
from specdsl.errors import SpecError
from specdsl.frontend.format import format_raw, render_document
from specdsl.frontend.loader import find_spec, library_families, library_specs, read_spec_text
from specdsl.frontend.syntax import parse_text
from specdsl.ir import ModelIR
from specdsl.output.files import preflight, staged_output, write_file
from specdsl.output.text import human, table
from specdsl.passes.analysis import Report, layer_rows
from specdsl.passes.lower import lower
from specdsl.training.schedule import schedule_of


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def summary(ir: ModelIR, report: Report) -> dict[str, Any]:
    """One network in a line: what `list`, `check` and `scale` report."""
    return {
        "name": ir.name,
        "dialect": ir.spec.dialect.value,
        "resolution": ir.resolution,
        "blocks": report.blocks,
        "params": report.params,
        "macs": report.macs,
    }


def cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    results = []
    for path in args.specs:
        try:
            ir = inputs.load(path, args.root)
            cli_features.declared(ir)  # an outputs { … } section the network does not have
        except SpecError as error:
            if not args.json:
                print(error, file=sys.stderr)
            failed += 1
            where = {"path": error.path, "line": error.line, "column": error.column}
            results.append({"spec": path, "ok": False, "error": {"message": error.message, **where}})
            continue
        report = api.analyze(ir)
        results.append({"spec": path, "ok": True, **summary(ir, report)})
        if not args.quiet and not args.json:
            print(f"ok  {path}  {ir.name}: {report.blocks} blocks, {report.params:,} params, {human(report.macs)} MACs")
    if args.json:
        _print_json(results)
    if failed:
        print(f"{failed} of {len(args.specs)} spec(s) failed", file=sys.stderr)
        return 2
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    shipped = library_specs()
    rows = []
    for family, names in library_families().items():
        for name in names:
            ir = api.load(shipped[name])
            rows.append({"family": family, "spec": name, **summary(ir, api.analyze(ir))})
    if args.json:
        _print_json(rows)
        return 0
    for family in library_families():
        cells = [[r["spec"], r["name"], r["dialect"], r["resolution"], r["blocks"], f"{r['params']:,}",
                  human(r["macs"])] for r in rows if r["family"] == family]  # fmt: skip
        print(family)
        print(table(["spec", "name", "dialect", "res", "blocks", "params", "MACs"], cells, align="lllrrrr"))
        print()
    return 0


def _analyze_with_flags(ir: ModelIR, args: argparse.Namespace) -> Report:
    """`info`'s analysis; out-of-range --resolution / --batch-size are reported against the flags."""
    inputs.check_range("--resolution", args.resolution, limits.MIN_RESOLUTION, limits.MAX_RESOLUTION, " pixels")
    inputs.check_range("--batch-size", args.batch_size, 1, limits.MAX_BATCH)
    with inputs.blamed_on(inputs.flags(("--resolution", args.resolution))):
        return api.analyze(ir, batch_size=args.batch_size, dtype=args.dtype, resolution=args.resolution)


def cmd_info(args: argparse.Namespace) -> int:
    if args.plot and Path(args.plot).suffix.lower() != ".svg":
        raise SpecError(
            "the --plot chart is SVG: name a .svg file", path=f"--plot {args.plot}", hint="`specdsl plot` draws png/pdf"
        )
    ir = inputs.load(args.spec, args.root)
    report = _analyze_with_flags(ir, args)
    layers = layer_rows(lower(api.at_resolution(ir, args.resolution))) if args.layers else None
    chosen = cli_features.options(args)
    declared = chosen or ir.spec.outputs.features is not None  # flags, or a backbone spec (docs/features.md)
    backbone = cli_features.backbone(api.at_resolution(ir, args.resolution), chosen) if declared else None
    if args.json:
        data = report.model_dump(mode="json")
        if backbone is not None:
            data["features"] = backbone
        if args.schedule:
            data["schedule"] = [stage.to_json() for stage in schedule_of(ir)]
        if layers is not None:
            data["layers"] = [row.model_dump(mode="json") for row in layers]
        _print_json(data)
    else:
        print(report_table(report))
        if layers is not None:
            print()
            print(layers_table(layers))
        if backbone is not None:
            print()
            print(cli_features.tap_table(backbone))
        if args.schedule:
            print()
            print(_schedule_table(ir))
    if args.plot:
        from specdsl.cli.plot import report_svg

        write_file(args.plot, report_svg(report), force=args.force)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _schedule_table(ir: ModelIR) -> str:
    headers = ["stage", "epochs", "image_size", "randaug", "mixup", "dropout", "drop_path"]
    rows = [
        [stage.stage, f"{stage.start_epoch}-{stage.end_epoch}", stage.image_size]
        + [f"{value:.4g}" for value in (stage.randaug, stage.mixup, stage.dropout, stage.drop_path)]
        for stage in schedule_of(ir)
    ]
    recipe = ir.training
    title = f"training schedule (progressive learning, dropout: {recipe.dropout_schedule})"
    return f"{title}\n" + table(headers, rows, align="r" * len(headers))


def parse_count(text: str) -> float:
    """'2e9', '2G', '500M', '1.5k' -> a number (argparse type for --target-macs)."""
    suffixes = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
    stripped = text.strip().lower()
    factor = suffixes.get(stripped[-1:], 1.0)
    try:
        return float(stripped[:-1] if factor != 1.0 else stripped) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (examples: 2e9, 2G, 500M)") from None


def _comparison(base: Report, scaled: Report, base_ir: ModelIR, scaled_ir: ModelIR) -> list[list[object]]:
    rows: list[list[object]] = [
        ["name", base_ir.name, scaled_ir.name],
        ["width", base_ir.spec.scaling.width, scaled_ir.spec.scaling.width],
        ["depth", base_ir.spec.scaling.depth, scaled_ir.spec.scaling.depth],
        ["resolution", base_ir.resolution, scaled_ir.resolution],
        ["train resolution", base_ir.train_resolution, scaled_ir.train_resolution],
        ["blocks", base.blocks, scaled.blocks],
        ["params", base.params, scaled.params],
        ["MACs", base.macs, scaled.macs],
    ]
    for b, s in zip(base.stages, scaled.stages, strict=True):
        rows.append([b.name, f"{b.blocks} x {b.out_channels}", f"{s.blocks} x {s.out_channels}"])
    return rows


def _comparison_table(rows: list[list[object]]) -> str:
    def cell(label: object, value: object) -> object:
        if label == "params":
            return f"{value:,}"
        if label == "MACs":
            return human(float(value))  # type: ignore[arg-type]
        return f"{value:.4g}" if isinstance(value, float) else value

    return table(["", "base", "scaled"], [[r[0], cell(r[0], r[1]), cell(r[0], r[2])] for r in rows], align="lrr")


#: `scale`'s flags, named as `api.scale` names its arguments.
_SCALE_OPTIONS = ("phi", "width", "depth", "resolution", "target_macs", "train_resolution", "dropout", "name")


def cmd_scale(args: argparse.Namespace) -> int:
    base = inputs.load(args.spec, args.root)
    settings = {key: getattr(args, key) for key in _SCALE_OPTIONS}
    with inputs.blamed_on(inputs.flags(*((f"--{key.replace('_', '-')}", value) for key, value in settings.items()))):
        scaled = api.scale(base, **settings)
    source = args.spec if args.spec not in (None, inputs.STDIN) else "<stdin>"
    how = " ".join(sys.argv[1:]) if sys.argv[1:2] == ["scale"] else f"specdsl.scale of {source}"
    text = render_document(scaled.spec, header=[f"Generated by: specdsl {how}", f"Base: {base.name}"])
    if api.loads(text, str(args.output or "<scaled>")).network() != scaled.network():
        raise RuntimeError("scaled spec does not re-parse to the same network")  # a bug, not bad input
    base_report, scaled_report = api.analyze(base), api.analyze(scaled)
    rows = _comparison(base_report, scaled_report, base, scaled)
    if args.output is not None:
        write_file(args.output, text, force=args.force)
    if args.json:
        data: dict[str, Any] = {
            "base": summary(base, base_report),
            "scaled": summary(scaled, scaled_report),
            "comparison": [{"": r[0], "base": r[1], "scaled": r[2]} for r in rows],
            "written": args.output,
        }
        if args.output is None:
            data["spec"] = text
        _print_json(data)
    elif args.output is None:
        print(_comparison_table(rows), file=sys.stderr)
        sys.stdout.write(text)
    else:
        print(_comparison_table(rows))
        print(f"wrote {args.output}")
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    unformatted = 0
    for argument in args.specs:
        path = str(find_spec(argument))
        inputs.load(path, args.root)  # only valid specs are formatted
        text = read_spec_text(Path(path), path)
        formatted = format_raw(parse_text(text, path))
        if args.check:
            if formatted != text:
                print(f"would reformat {path}", file=sys.stderr)
                unformatted += 1
        elif args.write:
            if formatted != text:
                write_file(os.path.realpath(path), formatted, force=True)  # through a link: the file it names
                print(f"reformatted {path}")
        else:
            sys.stdout.write(formatted)
    return 2 if unformatted else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from specdsl.spec import SpecDocument

    model = SpecDocument if args.document else ModelIR
    _print_json(model.model_json_schema())
    return 0


def _read_weights(path: str, ir: ModelIR) -> object:
    """Load and check a weights file up front, so a bad file is a diagnostic, not a half-built output."""
    from specdsl import weights as canonical

    if not Path(path).is_file():
        raise SpecError("weights file not found", path=path)
    try:
        return canonical.load(path, ir)
    except canonical.WeightsError as error:
        raise SpecError(str(error), path=path) from None
    except Exception as error:  # safetensors reports corrupt files with its own exception types
        raise SpecError(f"not a readable safetensors file ({error})", path=path) from None


#: TensorFlow's native start-up log lines: absl's pre-init warning, printed whatever the log level, and INFO lines
#: such as oneDNN's notice, some printed before TensorFlow reads TF_CPP_MIN_LOG_LEVEL. Noise for a command-line user.
_PRE_INIT_WARNING = r"WARNING: All log messages before absl::InitializeLog\(\)"
_INFO_LINE = r"I\d{4} \d\d:\d\d:\d\d"
#: What the TFLite converter and interpreter print on the stderr descriptor while `build --export tflite` converts.
_TFLITE_NOISE = re.compile(r"fully_quantize: |INFO: Created TensorFlow Lite XNNPACK delegate|[WI]\d{4} ")


@contextlib.contextmanager
def quiet_framework_logs() -> Iterator[None]:
    """While a backend's framework is imported: TensorFlow's C++ log level defaults to warnings and above, and its
    start-up INFO lines on the stderr file descriptor are dropped. A level the user set is kept, and then only
    absl's pre-init warning (which no level silences) is dropped. Any other line is passed on."""
    user_level = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    noise = re.compile(_PRE_INIT_WARNING if user_level else f"{_PRE_INIT_WARNING}|{_INFO_LINE}")
    if not user_level:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # read once, when TensorFlow loads: not left behind for other code
    try:
        with _filtered_stderr_descriptor(noise):
            yield
    finally:
        if not user_level:
            del os.environ["TF_CPP_MIN_LOG_LEVEL"]


@contextlib.contextmanager
def _filtered_stderr_descriptor(noise: re.Pattern[str]) -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr descriptor: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not noise.match(line)))


def _planned_outputs(backend: str, stem: str, export: str | None) -> list[Path]:
    """The files a build will write, from the backends' contract (a test checks it against what they write)."""
    entry = BACKENDS[backend]
    suffixes = [*entry.outputs, *([entry.exports[export].suffix] if export in entry.exports else [])]
    return [Path(stem + suffix) for suffix in suffixes]


def cmd_build(args: argparse.Namespace) -> int:
    from specdsl.backends import load_backend
    from specdsl.backends.naming import file_stem

    with quiet_framework_logs():
        backend = load_backend(args.backend)  # before any work: a missing framework is reported first
    options = build_flags.given_options(args, cli_features.options(args))
    exports = list(BACKENDS[args.backend].exports)
    if args.export is not None and args.export not in exports:
        raise SpecError(f"backend '{args.backend}' cannot export {args.export!r}; it exports: {', '.join(exports)}")
    inputs.check_range("--seed", args.seed, 0, 2**63 - 1)
    ir = inputs.load(args.spec, args.root)
    cli_features.check(ir, args, cli_features.options(args))
    out_dir = Path(args.output or Path("build", file_stem(ir.name)))
    preflight(out_dir, _planned_outputs(args.backend, file_stem(ir.name), args.export), force=args.force)
    weights = _read_weights(args.weights, ir) if args.weights else None
    calibration = edge.calibration(args, backend, ir, options)  # --quantize: checked, its data read (docs/edge.md)
    options = {
        "weights": weights,
        "seed": args.seed,
        **options,
        **({"calibration": calibration} if calibration else {}),
    }
    report = api.analyze(ir)
    started = time.perf_counter()
    with staged_output(out_dir, force=args.force) as staging:
        print(f"building {ir.name} ({report.params:,} params) for {args.backend} ...", file=sys.stderr, flush=True)
        with _filtered_stderr_descriptor(_TFLITE_NOISE) if args.export == "tflite" else contextlib.nullcontext():
            emitted = backend.emit(ir, staging.path, **options)
    # The backend's order (module, weights, program), then anything else it wrote.
    written = [out_dir / Path(path).relative_to(staging.path) for path in emitted]
    written += [path for path in staging.published if path not in written]
    print(f"built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if args.json:
        quantization = {"quantization": calibration.measured} if calibration else {}
        _print_json(
            {"report": report.model_dump(mode="json"), "written": [str(path) for path in written], **quantization}
        )
        return 0
    print(report_table(report))
    print()
    if calibration:
        print("\n".join(edge.measured_lines(calibration.measured)))
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from specdsl.cli import diagram

    image_format = diagram.image_format(args.output)
    ir = inputs.load(args.spec, args.root)
    if args.scaling:
        figure, drawn = diagram.scaling_figure(ir, diagram.family(ir))
    else:
        figure, drawn = diagram.architecture_figure(ir, api.analyze(ir), by=args.by)
    data = diagram.render(figure, image_format)
    write_file(args.output, data, force=args.force)
    if args.json:
        _print_json({"written": args.output, **drawn})
    else:
        print(f"wrote {args.output}")
    return 0
