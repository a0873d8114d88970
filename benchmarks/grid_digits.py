"""Acceptance run of ``specdsl grid``: a coarse grid over benchmarks/grid_digits.spec on builtin:digits must finish
within 10 minutes on this 2-core CPU and write every output; the found spec must pass ``specdsl check`` and build
with every backend.

The timed span is the whole ``specdsl grid`` command as a user runs it (interpreter start, grid enumeration and
MACs, every proxy training, the report), in a fresh output directory. Afterwards ``best.spec`` goes through
``specdsl check`` and ``specdsl build --backend torch|keras|onnx``. Writes benchmarks/results_grid_digits.md and
docs/img/grid_digits.png.

    python benchmarks/grid_digits.py [--jobs N] [--threads T] [--out-dir DIR]

The command names ``--threads`` (default 1): the trainer is deterministic on CPU at a fixed thread count, so the
numbers (not the time) are the same on any machine with this torch; without it each job gets the cores / jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from frontend import cpu_name  # this folder is sys.path[0] when run as a script

import specdsl as specdsl_api

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "benchmarks" / "grid_digits.spec"
BUDGET_S = 600.0
GRID = ["--alpha", "1:2:0.1", "--beta", "1:1.4:0.05", "--gamma", "1:1.5:0.1", "--budget", "2", "--tolerance", "0.1"]
PROXY = ["--epochs", "9", "--eta", "3", "--top", "3"]
BACKENDS = ("torch", "keras", "onnx")


def specdsl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specdsl", *args], capture_output=True, text=True, cwd=ROOT)


def run_grid(out: Path, jobs: int, threads: int) -> tuple[float, tuple[float, float], str]:
    """The timed command; its stderr (progress) is shown as it comes."""
    command = ["grid", str(SPEC.relative_to(ROOT)), "-o", str(out), *GRID, *PROXY, "--jobs", str(jobs)]
    command += ["--threads", str(threads)]
    before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "specdsl", *command], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"specdsl grid failed ({done.returncode})")
    return seconds, (before, os.getloadavg()[0]), "specdsl " + " ".join([*command[:3], "OUT", *command[4:]])


def check_answer(out: Path) -> dict[str, str]:
    """``specdsl check best.spec`` and a build per backend: what each printed (or why it failed)."""
    outcome = {}
    checked = specdsl("check", str(out / "best.spec"))
    shown = checked.stdout.strip().replace(str(out), "OUT")
    outcome["check"] = shown if checked.returncode == 0 else "FAILED: " + checked.stderr.strip()
    for backend in BACKENDS:
        built = specdsl("build", str(out / "best.spec"), "--backend", backend, "-o", str(out / "build" / backend))
        files = sorted(path.name for path in (out / "build" / backend).glob("*")) if built.returncode == 0 else []
        outcome[backend] = ", ".join(files) if built.returncode == 0 else "FAILED: " + built.stderr.strip()
    return outcome


def report(
    out: Path, seconds: float, loads: tuple[float, float], command: str, jobs: int, threads: int, answer: dict
) -> str:
    summary = json.loads((out / "summary.json").read_text())
    base = specdsl_api.load(SPEC)
    written = sorted(path.name for path in out.iterdir() if path.name != "build")
    best = summary["best"]
    met = seconds <= BUDGET_S and not any(value.startswith("FAILED") for value in answer.values())
    lines = [
        "# Acceptance: `specdsl grid` on builtin:digits",
        "",
        f"Command: `{command}`",
        "",
        f"- CPU: {cpu_name()} ({os.cpu_count()} logical cores), {jobs} jobs of {threads} torch thread(s) each; "
        f"1-minute load average {loads[0]:.2f} before, {loads[1]:.2f} after (other engineers' jobs share the cores)",
        f"- Python {platform.python_version()}; base `benchmarks/grid_digits.spec` ({base.resolution} px, "
        f"{specdsl_api.analyze(base).params:,} parameters, {specdsl_api.analyze(base).macs / 1e6:.2f}M MACs)",
        f"- wall time of the whole command (interpreter start, {summary['points']} grid points scaled and counted, "
        f"every proxy training, the report): **{seconds:.1f} s** (budget {BUDGET_S:.0f} s)",
        f"- {summary['points']} grid points, {summary['kept']} within 10% of the 2x MACs budget, "
        f"{summary['networks']} distinct networks after rounding",
        f"- successive halving: **{summary['epochs_spent']} epochs** trained against {summary['epochs_full_grid']} "
        f"for every network's full 9-epoch proxy: {summary['epochs_full_grid'] - summary['epochs_spent']} fewer "
        f"({100 * (1 - summary['epochs_spent'] / summary['epochs_full_grid']):.0f}% saved)",
        f"- found: α = {best['alpha']:g}, β = {best['beta']:g}, γ = {best['gamma']:g} (MACs ratio {best['ratio']:.3f}, "
        f"αβ²γ² = {best['ideal']:.3f}), {100 * best['accuracy']:.2f}% held-out after {best['epochs']} epochs",
        f"- written: {', '.join(written)}",
        f"- `specdsl check best.spec`: {answer['check']}",
        *(f"- `specdsl build best.spec --backend {backend}`: {answer[backend]}" for backend in BACKENDS),
        f"- acceptance met: {'yes' if met else '**no**'}",
        "",
        "## table.md of the run",
        "",
        (out / "table.md").read_text().split("\n", 2)[2].strip(),
        "",
        "![held-out accuracy against MACs per rung, the chosen point starred](../docs/img/grid_digits.png)",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="parallel trainings (default: 2, this machine's cores)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job (default: 1, reproducible)")
    parser.add_argument("--out-dir", type=Path, help="keep the search here (default: a temporary directory)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_grid_digits.md")
    args = parser.parse_args()
    scratch = None if args.out_dir else Path(tempfile.mkdtemp(prefix="grid-digits-"))
    out = args.out_dir or scratch / "out"
    try:
        seconds, loads, command = run_grid(out, args.jobs, args.threads)
        answer = check_answer(out)
        text = report(out, seconds, loads, command, args.jobs, args.threads, answer)
        args.results.write_text(text)
        shutil.copyfile(out / "accuracy_vs_macs.png", ROOT / "docs" / "img" / "grid_digits.png")
        print(text)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
