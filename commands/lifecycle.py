"""`init`, `id`, `run`, `wipe`, `backup`, `restore`, `config check`, `demo`: a node's life."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from pathlib import Path
from typing import Any

from node import local_api as api
from protocol.errors import CanopyError, UsageError

from .common import data_dir, now_ms, opened, passphrase
from .output import fields, print_json, when


async def cmd_init(args: argparse.Namespace) -> int:
    from node.local import Local
    from node.revocation import create_certificate

    path = data_dir(args)
    secret = None if args.no_passphrase else passphrase(args, confirm=True)
    local = await Local.create(path, args.name or "", secret)
    try:
        node_id = local.node_id
        await create_certificate(local, now_ms())
        print(f"Created a Canopy identity in {path}")
        print(f"node id:      {node_id}")
        print(f"safety code:  {node_id.safety_code()}")
        print(
            "A revocation certificate was made. Keep a copy OFFLINE (paper, a USB stick in a "
            "safe):\n  canopy revocation export --out FILE\nIf this device is seized or its "
            "key stolen, any node can publish it: canopy revoke-key --certificate FILE"
        )
        if secret is None:
            print("warning: the secret key is stored WITHOUT a passphrase (--no-passphrase)")
    finally:
        await local.close()
    return 0


async def cmd_id(args: argparse.Namespace) -> int:
    from node.config import load_config

    async with opened(args) as local:
        status = api.call(local.path, "GET", "/v1/status")
        addresses = (
            status.get("advertise", [])
            if status
            else list(load_config(Path(args.config) if args.config else None).advertised())
        )
        info = {
            "id": str(local.node_id),
            "name": await local.name(),
            "safety_code": local.node_id.safety_code(),
            "addresses": addresses,
            "running": status is not None,
        }
    if args.json:
        print_json(info)
    else:
        fields(
            [
                ("name", info["name"] or "(none)"),
                ("node id", info["id"]),
                ("safety code", info["safety_code"]),
                ("addresses", ", ".join(addresses) or "(none)"),
                ("running", "yes" if info["running"] else "no"),
            ],
            width=14,
        )
    return 0


async def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from node.config import load_config, split_host_port
    from node.local import Local, RunLock
    from node.logs import setup_logging

    config = load_config(Path(args.config) if args.config else None)
    if args.listen:
        try:
            split_host_port(args.listen)
        except ValueError:
            raise UsageError("--listen must be HOST:PORT") from None
        config = replace(config, listen=args.listen)
    setup_logging(
        args.log_format or config.log_format, "debug" if args.verbose else config.log_level
    )
    path = data_dir(args)
    if not Local.is_initialised(path):
        raise CanopyError(f"no Canopy identity in {path}; run: canopy --data {path} init")
    lock = RunLock.acquire(path)  # one node per data directory, before anything is written
    try:
        return await _run_locked(args, config)
    finally:
        lock.release()


async def _run_locked(args: argparse.Namespace, config: Any) -> int:
    from node.runtime import Node

    async with opened(args) as local:
        node = Node(local, config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await node.start()
            print(
                f"canopy node {local.node_id} running; peer endpoint {node.listen_url}",
                flush=True,
            )
            await stop.wait()
        finally:
            await node.stop()
    return 0


async def cmd_wipe(args: argparse.Namespace) -> int:
    from node.wipe import wipe

    if not args.yes:
        raise UsageError("wipe destroys this node's keys for good; confirm with --yes")
    report = wipe(data_dir(args))
    print(
        f"keys destroyed in {report.seconds * 1000:.0f} ms; the data directory is unreadable"
        + ("; the running node was stopped" if report.stopped_node else "")
    )
    return 0


async def cmd_backup(args: argparse.Namespace) -> int:
    from node.backups import make_backup

    async with opened(args) as local:
        if Path(args.out).exists():
            raise CanopyError(f"{args.out} already exists; choose a new file name")
        from node.local import Local

        # The backup is encrypted with the node's passphrase; a node without one must be
        # given a passphrase for the backup all the same (it leaves the machine).
        secret = (
            passphrase(args)
            if Local.key_needs_passphrase(local.path)
            else passphrase(args, confirm=True)
        )
        size = await make_backup(local, Path(args.out), secret, now_ms())
    print(f"wrote {args.out} ({size} bytes, encrypted with the passphrase)")
    print("keep it away from this machine; restore with: canopy restore FILE", file=sys.stderr)
    return 0


async def cmd_restore(args: argparse.Namespace) -> int:
    from node.backups import restore_backup

    target = Path(args.restore_data).expanduser() if args.restore_data else data_dir(args)
    done = await restore_backup(Path(args.file), target, passphrase(args), force=args.force)
    records = ", ".join(f"{k} {v}" for k, v in sorted(done.records.items())) or "no records"
    print(f"restored {done.node_id} into {target} (backup of {when(done.created)}; {records})")
    return 0


async def cmd_config_check(args: argparse.Namespace) -> int:
    from node.config import load_config

    config = load_config(Path(args.file))
    print(f"{args.file}: ok (listen {config.listen}, api {config.api_listen})")
    return 0


# `canopy demo --FLAG` -> the module whose DEMO it plays (no flag: node/demo.py's story)
_DEMOS = {
    "rapid_response": "node.demo_rapid",
    "networks": "node.demo_networks",
    "know_who": "node.demo_knowwho",
}


async def cmd_demo(args: argparse.Namespace) -> int:
    for flag, module in _DEMOS.items():
        if getattr(args, flag):
            from node.demo_story import run_story

            return await run_story(importlib.import_module(module).DEMO, keep=args.keep)
    from node.demo import run_demo

    return await run_demo(keep=args.keep)
