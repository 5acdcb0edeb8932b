"""Opening the data directory: the one way every command reaches Local and wakes the node."""

from __future__ import annotations

import argparse
import getpass
import math
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from node.clock import now_ms as now_ms  # the one wall clock, re-exported for commands/
from protocol.errors import CanopyError, UsageError

if TYPE_CHECKING:
    from node.local import Local

T = TypeVar("T")


def data_dir(args: argparse.Namespace) -> Path:
    from node.local import default_data_dir

    return Path(args.data).expanduser() if args.data else default_data_dir()


def passphrase(args: argparse.Namespace, *, confirm: bool = False) -> bytes:
    from node.local import read_passphrase_file

    if args.passphrase_file:
        return read_passphrase_file(Path(args.passphrase_file))
    env = os.environ.get("CANOPY_PASSPHRASE")
    if env is not None:
        return env.encode("utf-8")
    if not sys.stdin.isatty():
        raise CanopyError(
            "a passphrase is needed: set CANOPY_PASSPHRASE or pass --passphrase-file FILE"
        )
    first = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Passphrase again: ") != first:
        raise CanopyError("the passphrases differ")
    if not first:
        raise CanopyError("an empty passphrase is not allowed; use init --no-passphrase to opt out")
    return first.encode("utf-8")


@asynccontextmanager
async def opened(args: argparse.Namespace, *, notify: bool = False) -> AsyncIterator[Local]:
    """The data directory opened (asking for the passphrase when the key has one), closed on
    leaving; with `notify`, a running node is told of the change once the block succeeded."""
    from node import local_api as api
    from node.local import Local
    from node.revocation import apply_stored_revocations

    path = data_dir(args)
    if not Local.is_initialised(path):
        raise CanopyError(f"no Canopy identity in {path}; run: canopy --data {path} init")
    secret = passphrase(args) if Local.key_needs_passphrase(path) else None
    local = await Local.open(path, secret)
    try:
        # A revocation stored but never applied (stores written before every path applied
        # them) counts from now on, for every command that reads the revoked set.
        await apply_stored_revocations(local, now_ms())
        yield local
    finally:
        await local.close()
    if notify:
        api.notify(path)


async def on_id(
    args: argparse.Namespace,
    act: Callable[[Local, str, int], Awaitable[T]],
    *,
    notify: bool = False,
) -> T:
    """`act(local, args.id, now)` on the opened data directory (a command about one record
    by its id); with `notify`, as `opened`."""
    async with opened(args, notify=notify) as local:
        return await act(local, args.id, now_ms())


def hours(value: float) -> int:
    """--hours as milliseconds: finite, positive, at most five years."""
    if not math.isfinite(value) or value <= 0 or value > 5 * 365 * 24:
        raise UsageError("--hours must be a number of hours between 0 and 43800")
    return int(value * 3600 * 1000)
