"""The one walk every importer shares: canonical tensor by canonical tensor, found, converted, checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from specdsl.ir import Block, ModelIR
from specdsl.passes.lower import Linear, Op, block_prefix, lower, weighted_ops
from specdsl.weights import WeightsError

#: Where an op's tensors live in the source: (op, its role, its block) -> the source's layer key.
#: The role is the op's name inside its block ("expand.conv", "se.reduce"), or its full name outside blocks.
Locate = Callable[[Op, str, Block | None], str]
#: (op, canonical suffix such as "weight", source tensor) -> numpy array in canonical layout.
Convert = Callable[[Op, str, Any], np.ndarray]


def role(op: Op, ir: ModelIR) -> tuple[str, Block | None]:
    if op.block is None:
        return op.name, None
    block = ir.blocks[op.block]
    return op.name.removeprefix(f"{block_prefix(block)}."), block


class HeadMismatch(WeightsError):
    """The source fits but for its classifier, which has another class count."""


#: PyTorch's parameter names for each canonical suffix (every torch source keeps the canonical ones).
TORCH_SUFFIXES: dict[str, dict[str, str]] = {
    "conv": {"weight": "weight", "bias": "bias"},
    "cond_conv": {"weight": "weight"},
    "batch_norm": {"weight": "weight", "bias": "bias", "running_mean": "running_mean", "running_var": "running_var"},
    "linear": {"weight": "weight", "bias": "bias"},
}
#: How many problems one error lists before it counts the rest.
SHOWN = 3


def _listed(problems: list[str]) -> str:
    shown = "; ".join(problems[:SHOWN])
    return shown + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")


def gather(
    ir: ModelIR,
    source: Mapping[str, Any],
    locate: Locate,
    suffixes: Mapping[str, Mapping[str, str]],
    convert: Convert,
    label: str,
    sep: str,
    *,
    skip_head: bool = False,
) -> dict[str, np.ndarray]:
    """Each canonical tensor of ``ir`` from ``source[f"{locate(...)}{sep}{suffixes[op.op][suffix]}"]``.

    Every canonical tensor is matched exactly once, by name rule and shape; the canonical tensors the source lacks
    or shapes differently and the source tensors no canonical tensor claims (a bigger network) are one error
    that lists them (the first few, then a count). A classifier whose class count differs is reported as such;
    with ``skip_head`` the classifier's source tensors are claimed but not read, and the result lacks them.
    """
    state: dict[str, np.ndarray] = {}
    used: set[str] = set()
    problems: list[str] = []
    head: str | None = None
    for op in weighted_ops(lower(ir)):
        where = locate(op, *role(op, ir))
        classifier = isinstance(op, Linear) and op.name == "classifier"
        for name, shape in op.tensors().items():
            suffix = name.rsplit(".", 1)[1]
            key = f"{where}{sep}{suffixes[op.op][suffix]}"
            if classifier and skip_head:
                used.add(key)
                continue
            if key not in source:
                problems.append(f"it has no '{key}' for '{name}'")
                continue
            used.add(key)
            array = convert(op, suffix, source[key])
            if tuple(array.shape) != shape:
                if classifier and suffix == "bias" and array.ndim == 1:
                    head = f"its classifier has {array.shape[0]} classes, {ir.name} has {shape[0]}"
                    continue
                problems.append(f"'{key}' becomes shape {tuple(array.shape)}, but '{name}' needs {shape}")
                continue
            state[name] = array
    if head is not None:
        problems = [p for p in problems if "'classifier." not in p]
        problem = WeightsError if problems else HeadMismatch  # only the latter can be imported without its head
        raise problem(f"{label} does not fit {ir.name}: {_listed([head, *problems])}")
    unused = [key for key in source if key not in used]
    if unused:
        problems.append(f"{len(unused)} of its tensors have no place in the network, first '{unused[0]}'")
    if problems:
        raise WeightsError(f"{label} does not fit {ir.name}: {_listed(problems)} (is it the same variant?)")
    return state
