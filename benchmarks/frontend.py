"""Front-end speed: `import specdsl`, load + analyze and load + validate + scale + analyze of the largest shipped spec.

Goals on the 2-core dev machine: the import under 0.3 s (median); load + analyze under 10 ms, the fastest of the
samples (#21: one lowering per IR); the whole pipeline under 50 ms (median).
Run: python benchmarks/frontend.py [--repeats N] [--spec specs/v2_xl.spec] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def time_import(repeats: int) -> list[float]:
    """Each sample is a fresh interpreter, so nothing is cached in sys.modules."""
    code = "import time; t = time.perf_counter(); import specdsl; print(time.perf_counter() - t)"
    return [float(subprocess.check_output([sys.executable, "-c", code], cwd=ROOT)) for _ in range(repeats)]


def time_first_use(repeats: int, spec: Path) -> list[float]:
    """Fresh interpreter: import, build the grammar, load, scale and analyse once (what a CLI call pays)."""
    code = (
        "import time; t = time.perf_counter(); import specdsl; "
        f"ir = specdsl.load({str(spec)!r}); specdsl.analyze(specdsl.scale(ir, phi=0.5)); "
        "print(time.perf_counter() - t)"
    )
    return [float(subprocess.check_output([sys.executable, "-c", code], cwd=ROOT)) for _ in range(repeats)]


def time_load_analyze(repeats: int, spec: Path) -> list[float]:
    """Warm: what `specdsl info` costs once the process runs (parse, resolve with its memory check, analyse)."""
    import specdsl

    specdsl.analyze(specdsl.load(spec))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        specdsl.analyze(specdsl.load(spec))
        samples.append(time.perf_counter() - start)
    return samples


def time_pipeline(repeats: int, spec: Path) -> list[float]:
    import specdsl

    specdsl.analyze(specdsl.scale(specdsl.load(spec), phi=0.5))  # warm: grammar built, modules imported
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        ir = specdsl.load(spec)
        specdsl.analyze(specdsl.scale(ir, phi=0.5))
        samples.append(time.perf_counter() - start)
    return samples


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="samples per measurement (default: 20)")
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "v2_xl.spec", help="default: specs/v2_xl.spec")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()

    # (name, samples, goal in seconds or None, what the goal is judged on: "median" or "min")
    rows = [
        ("import specdsl (fresh process)", time_import(args.repeats), 0.3, "median"),
        (f"load + analyze {args.spec.name} (warm)", time_load_analyze(args.repeats, args.spec), 0.010, "min"),
        (
            f"load+validate+scale+analyze {args.spec.name} (warm)",
            time_pipeline(args.repeats, args.spec),
            0.050,
            "median",
        ),
        (
            f"import + first load/scale/analyze {args.spec.name}",
            time_first_use(max(3, args.repeats // 4), args.spec),
            None,
            "median",
        ),
    ]
    lines = [
        f"Front end on {cpu_name()} ({os.cpu_count()} cores), Python {platform.python_version()}",
        "",
        "| measurement | median | min | goal | met |",
        "|---|---|---|---|---|",
    ]
    for name, samples, goal, judged in rows:
        median = statistics.median(samples)
        measured = min(samples) if judged == "min" else median
        met = "" if goal is None else ("yes" if measured < goal else "no")
        goal_text = "" if goal is None else f"< {goal * 1000:.0f} ms" + (", min" if judged == "min" else "")
        lines.append(f"| {name} | {median * 1000:.1f} ms | {min(samples) * 1000:.1f} ms | {goal_text} | {met} |")
    load = os.getloadavg()[0]
    lines += [
        "",
        f"Command: `python benchmarks/frontend.py --repeats {args.repeats}` (1-minute load average {load:.2f})",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
