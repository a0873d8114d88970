"""torchrun's environment, read and checked once: (LOCAL_)RANK, (LOCAL_)WORLD_SIZE, MASTER_ADDR, MASTER_PORT.

Imports no deep-learning framework: ``specdsl grid`` and ``specdsl train`` check the environment before torch
loads, so a bad variable is one line naming it (exit 2), never a traceback from inside
``torch.distributed.init_process_group``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from specdsl.errors import SpecError, shorten

#: Ports torch's TCP store can listen on (0, "any free port", is not a rendezvous address).
PORT_RANGE = (1, 65535)

_INTEGER = re.compile(r"[0-9]{1,9}")  # a count or index of processes: never negative, never 10 digits long
_HOST = re.compile(r"\[?[A-Za-z0-9_.:%-]{1,253}\]?")  # a host name, IPv4, or (bracketed) IPv6 address


@dataclass(frozen=True)
class TorchrunEnvironment:
    """Where this process sits among torchrun's processes: rank 0 of 1 without torchrun."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None


def _where(name: str) -> str:
    return f"environment variable {name}"


def _integer(environ: Mapping[str, str], name: str, default: int, *, least: int) -> int:
    value = environ.get(name)
    if value is None:
        return default
    if not _INTEGER.fullmatch(value.strip()):
        raise SpecError(f"expected a whole number >= {least}, got {shorten(value)!r}", path=_where(name))
    number = int(value)
    if number < least:
        raise SpecError(f"expected a whole number >= {least}, got {value!r}", path=_where(name))
    return number


def _below(environ: Mapping[str, str], index_name: str, index: int, count_name: str, count: int) -> None:
    if index >= count:
        found = f"{count_name}={environ[count_name]!r}" if count_name in environ else f"{count_name} (unset: {count})"
        raise SpecError(f"{index_name}={index} must be below {found}", path=_where(index_name))


def torchrun_environment(environ: Mapping[str, str] = os.environ) -> TorchrunEnvironment:
    """The torchrun variables of ``environ``, each validated; a bad one is a `SpecError` naming the variable.

    Unset variables mean one process: WORLD_SIZE=1, RANK=0, LOCAL_RANK=0, LOCAL_WORLD_SIZE=WORLD_SIZE (every
    process on this machine). MASTER_ADDR and MASTER_PORT, the rendezvous torch's ``env://`` joins, are
    required when WORLD_SIZE > 1 and checked whenever set.
    """
    world_size = _integer(environ, "WORLD_SIZE", 1, least=1)
    rank = _integer(environ, "RANK", 0, least=0)
    _below(environ, "RANK", rank, "WORLD_SIZE", world_size)
    local_world_size = _integer(environ, "LOCAL_WORLD_SIZE", world_size, least=1)
    local_rank = _integer(environ, "LOCAL_RANK", 0, least=0)
    _below(environ, "LOCAL_RANK", local_rank, "LOCAL_WORLD_SIZE", local_world_size)
    master_addr = environ.get("MASTER_ADDR")
    if master_addr is not None and not _HOST.fullmatch(master_addr):
        raise SpecError(f"expected a host name or IP address, got {shorten(master_addr)!r}", path=_where("MASTER_ADDR"))
    master_port = None
    if "MASTER_PORT" in environ:
        low, high = PORT_RANGE
        value = environ["MASTER_PORT"]
        if not _INTEGER.fullmatch(value.strip()) or not low <= int(value) <= high:
            raise SpecError(f"expected a port number {low}..{high}, got {shorten(value)!r}", path=_where("MASTER_PORT"))
        master_port = int(value)
    if world_size > 1:
        for name, value, what in (("MASTER_ADDR", master_addr, "host"), ("MASTER_PORT", master_port, "port")):
            if value is None:
                raise SpecError(
                    f"WORLD_SIZE={world_size} needs {name}, the rendezvous {what} (torchrun sets it; or run "
                    "without WORLD_SIZE for one process)",
                    path=_where(name),
                )
    return TorchrunEnvironment(world_size, rank, local_rank, local_world_size, master_addr, master_port)
