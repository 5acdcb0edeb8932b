"""How cli.py builds its parser: a parser whose errors are one line, and a command's ACTIONs
(`canopy circle create`...), each with the handler that runs it."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import NoReturn

from protocol.errors import UsageError


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


Handler = Callable[[argparse.Namespace], Awaitable[int]]
Actions = argparse._SubParsersAction  # what `actions` returns: add one with `action`


def actions(
    parent: argparse.ArgumentParser,
    *,
    dest: str = "what",
    metavar: str = "ACTION",
    required: bool = True,
) -> Actions[argparse.ArgumentParser]:
    """The ACTIONs of a command (`canopy circle create`...), as its `dest`."""
    return parent.add_subparsers(dest=dest, metavar=metavar, parser_class=Parser, required=required)


def action(
    acts: Actions[argparse.ArgumentParser],
    name: str,
    func: Handler,
    help: str,
    *,
    description: str | None = None,
    **defaults: object,
) -> argparse.ArgumentParser:
    """One action: `func` runs it (with `defaults` set in its namespace)."""
    parser = acts.add_parser(name, help=help, description=description)
    parser.set_defaults(func=func, **defaults)
    return parser
