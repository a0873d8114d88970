"""One function per `specdsl` subcommand. Each returns an exit code; user errors raise SpecError."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from specdsl import api
from specdsl.cli.files import staged_directory, write_text
from specdsl.cli.output import human, layers_table, report_table, table
from specdsl.errors import SpecError
from specdsl.frontend.format import format_raw, render_document
from specdsl.frontend.loader import find_spec, library_families, library_specs, read_spec_text
from specdsl.frontend.syntax import parse_text
from specdsl.ir import ModelIR
from specdsl.passes.analysis import Report, layer_rows
from specdsl.passes.lower import lower


def cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.specs:
        try:
            ir = api.load(path)
        except SpecError as error:
            print(error, file=sys.stderr)
            failed += 1
            continue
        report = api.analyze(ir)
        if not args.quiet:
            print(f"ok  {path}  {ir.name}: {report.blocks} blocks, {report.params:,} params, {human(report.macs)} MACs")
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
            report = api.analyze(ir)
            rows.append({"family": family, "spec": name, "name": ir.name, "dialect": ir.spec.dialect.value,
                         "resolution": ir.resolution, "blocks": report.blocks, "params": report.params,
                         "macs": report.macs})  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for family in library_families():
        cells = [[r["spec"], r["name"], r["dialect"], r["resolution"], r["blocks"], f"{r['params']:,}",
                  human(r["macs"])] for r in rows if r["family"] == family]  # fmt: skip
        print(
            f"{family}\n"
            + table(["spec", "name", "dialect", "res", "blocks", "params", "MACs"], cells, align="lllrrrr")
        )
        print()
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    ir = api.load(args.spec)
    report = api.analyze(ir, batch_size=args.batch_size, dtype=args.dtype, resolution=args.resolution)
    layers = layer_rows(lower(api.at_resolution(ir, args.resolution))) if args.layers else None
    if args.json:
        data = report.model_dump(mode="json")
        if layers is not None:
            data["layers"] = [row.model_dump(mode="json") for row in layers]
        print(json.dumps(data, indent=2))
    else:
        print(report_table(report))
        if layers is not None:
            print()
            print(layers_table(layers))
        if args.schedule:
            print()
            print(_schedule_table(ir))
    if args.plot:
        from specdsl.cli.plot import report_svg

        write_text(Path(args.plot), report_svg(report), force=True)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _schedule_table(ir: ModelIR) -> str:
    plan = ir.training.schedule(ir.train_resolution, ir.head.dropout)
    keys = list(plan[0])
    rows = [[f"{row[key]:g}" if isinstance(row[key], float) else row[key] for key in keys] for row in plan]
    return "training schedule (progressive learning)\n" + table(keys, rows, align="r" * len(keys))


def parse_count(text: str) -> float:
    """'2e9', '2G', '500M', '1.5k' -> a number (argparse type for --target-macs)."""
    suffixes = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
    stripped = text.strip().lower()
    factor = suffixes.get(stripped[-1:], 1.0)
    try:
        return float(stripped[:-1] if factor != 1.0 else stripped) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (examples: 2e9, 2G, 500M)") from None


def _comparison(base: Report, scaled: Report, base_ir: ModelIR, scaled_ir: ModelIR) -> str:
    def pair(label: str, a: object, b: object) -> list[object]:
        return [label, a, b]

    rows = [
        pair("name", base_ir.name, scaled_ir.name),
        pair("width", f"{base_ir.spec.scaling.width:.4g}", f"{scaled_ir.spec.scaling.width:.4g}"),
        pair("depth", f"{base_ir.spec.scaling.depth:.4g}", f"{scaled_ir.spec.scaling.depth:.4g}"),
        pair("resolution", base_ir.resolution, scaled_ir.resolution),
        pair("train resolution", base_ir.train_resolution, scaled_ir.train_resolution),
        pair("blocks", base.blocks, scaled.blocks),
        pair("params", f"{base.params:,}", f"{scaled.params:,}"),
        pair("MACs", human(base.macs), human(scaled.macs)),
    ]
    for b, s in zip(base.stages, scaled.stages, strict=True):
        rows.append(pair(b.name, f"{b.blocks} x {b.out_channels}", f"{s.blocks} x {s.out_channels}"))
    return table(["", "base", "scaled"], rows, align="lrr")


def cmd_scale(args: argparse.Namespace) -> int:
    base = api.load(args.spec)
    scaled = api.scale(
        base,
        phi=args.phi,
        width=args.width,
        depth=args.depth,
        resolution=args.resolution,
        target_macs=args.target_macs,
        train_resolution=args.train_resolution,
        dropout=args.dropout,
        name=args.name,
    )
    how = " ".join(sys.argv[1:]) if sys.argv[1:2] == ["scale"] else f"specdsl.scale of {args.spec}"
    text = render_document(scaled.spec, header=[f"Generated by: specdsl {how}", f"Base: {base.name}"])
    if api.loads(text, str(args.output or "<scaled>")).network() != scaled.network():
        raise RuntimeError("scaled spec does not re-parse to the same network")  # a bug, not bad input
    comparison = _comparison(api.analyze(base), api.analyze(scaled), base, scaled)
    if args.output is None:
        print(comparison, file=sys.stderr)
        sys.stdout.write(text)
    else:
        write_text(Path(args.output), text, force=args.force)
        print(comparison)
        print(f"wrote {args.output}")
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    unformatted = 0
    for argument in args.specs:
        path = str(find_spec(argument))
        api.load(path)  # only valid specs are formatted
        text = read_spec_text(Path(path), path)
        formatted = format_raw(parse_text(text, path))
        if args.check:
            if formatted != text:
                print(f"would reformat {path}", file=sys.stderr)
                unformatted += 1
        elif args.write:
            if formatted != text:
                write_text(Path(path), formatted, force=True)
                print(f"reformatted {path}")
        else:
            sys.stdout.write(formatted)
    return 2 if unformatted else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from specdsl.spec import SpecDocument

    model = SpecDocument if args.document else ModelIR
    print(json.dumps(model.model_json_schema(), indent=2))
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


def cmd_build(args: argparse.Namespace) -> int:
    from specdsl.backends import load_backend

    backend = load_backend(args.backend)  # before any work: a missing framework is reported first
    ir = api.load(args.spec)
    out_dir = Path(args.output or f"build/{ir.name}")
    weights = _read_weights(args.weights, ir) if args.weights else None
    options = {"weights": weights, "seed": args.seed, "deploy": args.deploy, "export": args.export}
    report = api.analyze(ir)
    print(f"building {ir.name} ({report.params:,} params) for {args.backend} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with staged_directory(out_dir, force=args.force) as staging:
        written = backend.emit(ir, staging, **options)
    print(f"built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(report_table(report))
    print()
    for path in written:
        print(f"wrote {out_dir / Path(path).name}")
    return 0
