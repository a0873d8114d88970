"""The one walk every importer shares: canonical tensor by canonical tensor, found, converted, checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from specdsl.ir import Block, ModelIR
from specdsl.passes.lower import Op, block_prefix, lower, weighted_ops
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


def gather(
    ir: ModelIR,
    source: Mapping[str, Any],
    locate: Locate,
    suffixes: Mapping[str, Mapping[str, str]],
    convert: Convert,
    label: str,
    sep: str,
) -> dict[str, np.ndarray]:
    """Each canonical tensor of ``ir`` from ``source[f"{locate(...)}{sep}{suffixes[op.op][suffix]}"]``.

    Raises on the first canonical tensor the source lacks or shapes differently, and on source
    tensors that no canonical tensor claims (the source is a bigger network).
    """
    state: dict[str, np.ndarray] = {}
    used: set[str] = set()
    for op in weighted_ops(lower(ir)):
        where = locate(op, *role(op, ir))
        for name, shape in op.tensors().items():
            suffix = name.rsplit(".", 1)[1]
            key = f"{where}{sep}{suffixes[op.op][suffix]}"
            if key not in source:
                raise WeightsError(
                    f"{label} does not fit {ir.name}: it has no '{key}' for '{name}' (is it the same variant?)"
                )
            array = convert(op, suffix, source[key])
            if tuple(array.shape) != shape:
                raise WeightsError(
                    f"{label} does not fit {ir.name}: '{key}' becomes shape {tuple(array.shape)}, "
                    f"but '{name}' needs {shape} (is it the same variant?)"
                )
            state[name] = array
            used.add(key)
    unused = [key for key in source if key not in used]
    if unused:
        raise WeightsError(
            f"{label} does not fit {ir.name}: {len(unused)} of its tensors have no place in the network, "
            f"first '{unused[0]}' (is it the same variant?)"
        )
    return state
