"""``specdsl build``'s backend flags, generated from the backends' contract (`specdsl.backends.OPTIONS`): one flag
per option however many backends take it, in its help section; the options a build was given, with one a
backend does not take refused before any work."""

from __future__ import annotations

import argparse
from typing import Any

from specdsl.backends import BACKENDS, OPTIONS, Option, UnsupportedOption, lacking, option_flag


def add_option(parser: argparse.ArgumentParser | Any, option: Option) -> None:
    """The flag of ``option`` on ``parser`` (a parser or an argument group)."""
    if option.type is None:
        parser.add_argument(option_flag(option.name), action="store_true", help=option.help)
        return
    how: dict[str, Any] = {"nargs": "?", "const": option.const} if option.const is not None else {}
    parser.add_argument(
        option_flag(option.name),
        type=option.type,
        choices=option.choices,
        metavar=option.metavar,
        help=option.help,
        **how,
    )


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """Every build option's flag, each in its help section (the general options first, as listed)."""
    groups: dict[str | None, Any] = {None: parser}
    for option in OPTIONS.values():
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        add_option(groups[option.group], option)


def backend_help() -> str:
    """``--backend``'s help: the backends, in the contract's order."""
    *first, last = BACKENDS
    return f"{', '.join(first)} or {last}"


def given_options(args: argparse.Namespace, backbone: dict[str, object]) -> dict[str, object]:
    """The backend keyword arguments the flags give, ``backbone`` (`specdsl.cli.features.options`) last: a flag
    left at its default is not passed, the calibration flags are `specdsl.cli.edge`'s to read. One the backend
    does not take is refused, before any work."""
    plain = {name: getattr(args, name) for name, option in OPTIONS.items() if option.reader is None}
    given = {name: value for name, value in plain.items() if value is not None and value is not False} | backbone
    refused = lacking(args.backend, given)
    if refused:
        raise UnsupportedOption(args.backend, refused)
    return given
