"""EfficientNetV2's non-uniform depth growth, derived from the published block strings, and how near it lands.

The V2 paper scales S to M and L by adding layers "gradually to later stages" and capping the
inference size at 480, without publishing the per-stage rule. specdsl's `rule = v2` multiplies
stage i's repeats by (alpha * growth_i)^phi. This script derives growth_i from how the published
larger variants relate to a base:

1. Per stage, the ratio of repeats target / base. A target with more stages than the base (M and L
   have a 7th stage S lacks) has its extra stages folded into the base's last stage.
2. For each target, phi is the value at which scaling the base (with the current growth) hits the
   target's MACs: the budget `specdsl scale --target-macs` solves for.
3. Per stage, ln(alpha * growth_i) is the least-squares slope through the origin of ln(ratio) against
   phi over the targets. Steps 2-3 repeat until the growth settles (two rounds in practice).

Then it measures `scale(base, target_macs=target MACs)` against each target: params, MACs, repeats.

    python benchmarks/v2_growth.py            # derive, measure, write results_v2_growth.md
    python benchmarks/v2_growth.py --check    # exit 1 unless the shipped specs declare the derived growth
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import specdsl
from specdsl.ir import ModelIR
from specdsl.passes import rescale
from specdsl.passes.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
#: base spec -> the published variants its growth is derived from, and the specs that declare that growth.
FAMILIES = {
    "v2_s": {"targets": ("v2_m", "v2_l"), "declared_by": ("v2_s",)},
    "v2_m": {"targets": ("v2_l", "v2_xl"), "declared_by": ("v2_m", "v2_l", "v2_xl")},
}
DIGITS = 4  # the growth is written to the specs rounded to this many decimals


def repeats(ir: ModelIR) -> list[int]:
    return [len(stage.blocks) for stage in ir.stages]


def folded_ratios(base: ModelIR, target: ModelIR) -> list[float]:
    """Repeats target / base per base stage, the target's extra stages counted in the base's last."""
    base_repeats, target_repeats = repeats(base), repeats(target)
    cut = len(base_repeats) - 1
    folded = [*target_repeats[:cut], sum(target_repeats[cut:])]
    return [t / b for t, b in zip(folded, base_repeats, strict=True)]


def with_growth(base: ModelIR, growth: list[float]) -> ModelIR:
    scaling = base.spec.scaling.model_copy(update={"rule": "v2", "stage_growth": growth})
    return resolve(base.spec.model_copy(update={"scaling": scaling}))


def phi_for(base: ModelIR, target_macs: int) -> float:
    low, high = rescale.bracket_phi(base.spec, target_macs)
    return (low + high) / 2


def derive(
    base: ModelIR, targets: list[ModelIR], start: list[float] | None = None
) -> tuple[list[float], dict[str, float]]:
    """(growth per stage, phi per target) at the fixed point of steps 2-3 in the module docstring.

    Starting from a fixed point (the growth a spec declares), the first round returns it unchanged.
    """
    ratios = {target.name: folded_ratios(base, target) for target in targets}
    macs = {target.name: specdsl.analyze(target).macs for target in targets}
    alpha = base.spec.scaling.alpha
    growth = start or [1.0] * len(base.stages)
    for _ in range(20):
        current = with_growth(base, growth)
        phis = {name: phi_for(current, budget) for name, budget in macs.items()}
        denominator = sum(phi * phi for phi in phis.values())
        slopes = [sum(phis[name] * math.log(ratio[i]) for name, ratio in ratios.items()) for i in range(len(growth))]
        new = [round(math.exp(slope / denominator) / alpha, DIGITS) for slope in slopes]
        if new == growth:
            return growth, phis
        growth = new
    raise RuntimeError("the growth did not settle")


def nearness(base: ModelIR, target: ModelIR) -> dict[str, object]:
    scaled = specdsl.scale(base, target_macs=specdsl.analyze(target).macs)
    ours, theirs = specdsl.analyze(scaled), specdsl.analyze(target)
    return {
        "target": target.name,
        "repeats": repeats(scaled),
        "target_repeats": repeats(target),
        "resolution": scaled.resolution,
        "params": ours.params,
        "target_params": theirs.params,
        "macs": ours.macs,
        "target_macs": theirs.macs,
    }


def declared(name: str) -> list[float] | None:
    return specdsl.load(ROOT / "specs" / f"{name}.spec").spec.scaling.stage_growth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare the derived growth with the specs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_v2_growth.md")
    args = parser.parse_args()
    lines = [
        "# EfficientNetV2 growth: derived from the published variants, measured with `scale --target-macs`",
        "",
        "Command: `python benchmarks/v2_growth.py` (method: the script's docstring and docs/language.md).",
        "",
    ]
    mismatches = []
    for base_name, family in FAMILIES.items():
        base = specdsl.load(ROOT / "specs" / f"{base_name}.spec")
        targets = [specdsl.load(ROOT / "specs" / f"{name}.spec") for name in family["targets"]]
        # --check starts from the declared growth: one round confirms it is the fixed point (and is cheap).
        growth, phis = derive(base, targets, start=declared(base_name) if args.check else None)
        mismatches += [name for name in family["declared_by"] if declared(name) != growth]
        if args.check:
            continue
        lines += [
            f"## base {base.name}: stage_growth = {growth}",
            "",
            "phi at each target's MACs: " + ", ".join(f"{name} {phi:.4f}" for name, phi in phis.items()),
            "",
            "| target | repeats (scaled base) | repeats (published) | resolution | params | vs published | MACs "
            "| vs published |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        grown = with_growth(base, growth)
        for target in targets:
            row = nearness(grown, target)
            lines.append(
                f"| {row['target']} | {row['repeats']} | {row['target_repeats']} | {row['resolution']} "
                f"| {row['params']:,} | {row['params'] / row['target_params'] - 1:+.1%} | {row['macs'] / 1e9:.3f}G "
                f"| {row['macs'] / row['target_macs'] - 1:+.2%} |"
            )
        lines.append("")
    if mismatches:
        print(f"specs whose stage_growth differs from the derivation: {', '.join(mismatches)}", file=sys.stderr)
    if args.check:
        return 1 if mismatches else 0
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
