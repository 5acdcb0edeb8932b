"""The `canopy` command line: parse arguments, call node/, print. Nothing else lives here.

Every CanopyError (and every OS error about a file the user named) becomes one line on
stderr and exit code 1; usage errors exit 2. Listing commands take --json.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from protocol.errors import CanopyError

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(CanopyError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


# -- helpers --------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _when(ms: int | None) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _data_dir(args: argparse.Namespace) -> Path:
    from node.local import default_data_dir

    return Path(args.data).expanduser() if args.data else default_data_dir()


def _passphrase(args: argparse.Namespace, *, confirm: bool = False) -> bytes:
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


async def _open(args: argparse.Namespace) -> Any:
    from node.local import Local

    path = _data_dir(args)
    if not Local.is_initialised(path):
        raise CanopyError(f"no Canopy identity in {path}; run: canopy --data {path} init")
    passphrase = _passphrase(args) if Local.key_needs_passphrase(path) else None
    local = await Local.open(path, passphrase)
    try:
        # A revocation stored but never applied (stores written before every path applied
        # them) counts from now on, for every command that reads the revoked set.
        from node.revocation import apply_stored_revocations

        await apply_stored_revocations(local, _now_ms())
    except BaseException:
        await local.close()
        raise
    return local


def _api(
    path: Path,
    method: str,
    route: str,
    body: dict[str, Any] | None = None,
    timeout: float = 5,
) -> dict[str, Any] | None:
    """Call the running node's local API; None when no node runs on this data directory."""
    from node.local import read_runtime

    runtime = read_runtime(path)
    if runtime is None:
        return None
    headers = {"Authorization": f"Bearer {runtime['token']}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    import urllib.error  # here, not at the top: `canopy run` never needs it
    import urllib.request

    request = urllib.request.Request(
        runtime["api"] + route,
        method=method,
        headers=headers,
        data=json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None),
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        if exc.code != 400:
            return None
        try:
            message = json.loads(exc.read()).get("error", "")
        except (ValueError, OSError):
            message = ""
        raise CanopyError(message or f"the node refused: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _notify(path: Path) -> None:
    _api(path, "POST", "/v1/notify")


def _hours(hours: float) -> int:
    """--hours as milliseconds: finite, positive, at most five years."""
    if not math.isfinite(hours) or hours <= 0 or hours > 5 * 365 * 24:
        raise UsageError("--hours must be a number of hours between 0 and 43800")
    return int(hours * 3600 * 1000)


# What must never reach a terminal raw, whoever wrote it (a peer's name, a guide's title or
# text, an error message): C0 and C1 controls but tab and newline (ESC starts CSI and OSC
# sequences: clear screen, window title, hyperlinks), DEL, the bidi embeddings, overrides,
# isolates and marks, line and paragraph separators, and lone surrogates.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNPRINTABLE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\u2028\u2029\ud800-\udfff]")
_UNPRINTABLE_IN_CELL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"  # also a valid JSON escape: JSON lines stay JSON


def printable(text: str, *, cell: bool = False) -> str:
    """`text` with every character above shown as \\uXXXX; `cell`: tab and newline too."""
    return (_UNPRINTABLE_IN_CELL if cell else _UNPRINTABLE).sub(_escape, text)


class _Printable:
    """A text stream that writes `printable(text)` to the stream it wraps: `main` puts one
    around stdout and stderr, so every line the CLI (or `canopy run`'s log) writes goes
    through it. --json output is unchanged by it: JSON already escapes all of these."""

    def __init__(self, stream: TextIO) -> None:
        self.unescaped = stream

    def write(self, text: str) -> int:
        self.unescaped.write(printable(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unescaped, name)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _table(rows: list[list[str]], header: list[str]) -> None:
    cells = [[printable(str(c), cell=True) for c in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# -- commands -------------------------------------------------------------------------------


async def cmd_init(args: argparse.Namespace) -> int:
    from node.local import Local
    from node.revocation import create_certificate

    path = _data_dir(args)
    passphrase = None if args.no_passphrase else _passphrase(args, confirm=True)
    local = await Local.create(path, args.name or "", passphrase)
    try:
        node_id = local.node_id
        await create_certificate(local, _now_ms())
        print(f"Created a Canopy identity in {path}")
        print(f"node id:      {node_id}")
        print(f"safety code:  {node_id.safety_code()}")
        print(
            "A revocation certificate was made. Keep a copy OFFLINE (paper, a USB stick in a "
            "safe):\n  canopy revocation export --out FILE\nIf this device is seized or its "
            "key stolen, any node can publish it: canopy revoke-key --certificate FILE"
        )
        if passphrase is None:
            print("warning: the secret key is stored WITHOUT a passphrase (--no-passphrase)")
    finally:
        await local.close()
    return 0


async def cmd_revocation_export(args: argparse.Namespace) -> int:
    from node.revocation import own_certificate
    from protocol.revocation import to_text

    local = await _open(args)
    try:
        text = to_text(await own_certificate(local, _now_ms()))
    finally:
        await local.close()
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        print(f"revocation certificate written to {args.out}; keep it offline", file=sys.stderr)
    else:
        print(text)
    return 0


async def cmd_revoke_key(args: argparse.Namespace) -> int:
    from node.revocation import publish_revocation

    text = None
    if args.certificate:
        try:
            text = Path(args.certificate).read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise CanopyError(f"cannot read {args.certificate}: {exc.strerror}") from None
    local = await _open(args)
    try:
        record = await publish_revocation(local, text, _now_ms())
    finally:
        await local.close()
    _notify(local.path)
    if record.author == local.node_id:
        print(f"revoked this node's key {record.author}")
        print(
            "peers refuse it as soon as they receive the revocation; create a new identity "
            "(canopy --data NEW_DIR init) and ask each peer to trust it after comparing "
            "safety codes by phone"
        )
    else:
        print(f"published the revocation of {record.author}; peers refuse it on receipt")
    return 0


async def cmd_exposure(args: argparse.Namespace) -> int:
    from node.revocation import exposure

    local = await _open(args)
    try:
        author, report = await exposure(local, args.id)
    finally:
        await local.close()
    if args.json:
        _print_json(
            {
                "author": str(author),
                "peers": [
                    {
                        "peer": e.peer,
                        "peer_id": e.peer_id,
                        "records": [
                            {"id": rid, "kind": kind, "sent_at": at} for rid, kind, at in e.records
                        ],
                    }
                    for e in report
                ],
            }
        )
        return 0
    if not report:
        print(f"no record by {author.short} was sent to any peer from this node")
        return 0
    for entry in report:
        print(f"{entry.peer}: {len(entry.records)} record(s)")
        for rid, kind, at in entry.records:
            print(f"  {rid[:16]}  {kind:<10} sent {_when(at)}")
    return 0


async def cmd_wipe(args: argparse.Namespace) -> int:
    from node.wipe import wipe

    if not args.yes:
        raise UsageError("wipe destroys this node's keys for good; confirm with --yes")
    report = wipe(_data_dir(args))
    print(
        f"keys destroyed in {report.seconds * 1000:.0f} ms; the data directory is unreadable"
        + ("; the running node was stopped" if report.stopped_node else "")
    )
    return 0


async def cmd_id(args: argparse.Namespace) -> int:
    from node.config import load_config

    local = await _open(args)
    try:
        status = _api(local.path, "GET", "/v1/status")
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
    finally:
        await local.close()
    if args.json:
        _print_json(info)
    else:
        print(f"name:         {info['name'] or '(none)'}")
        print(f"node id:      {info['id']}")
        print(f"safety code:  {info['safety_code']}")
        print(f"addresses:    {', '.join(addresses) or '(none)'}")
        print(f"running:      {'yes' if info['running'] else 'no'}")
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
    path = _data_dir(args)
    if not Local.is_initialised(path):
        raise CanopyError(f"no Canopy identity in {path}; run: canopy --data {path} init")
    lock = RunLock.acquire(path)  # one node per data directory, before anything is written
    try:
        return await _run_locked(args, config)
    finally:
        lock.release()


async def _run_locked(args: argparse.Namespace, config: Any) -> int:
    from node.runtime import Node

    local = await _open(args)
    node = Node(local, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
        print(f"canopy node {local.node_id} running; peer endpoint {node.listen_url}", flush=True)
        await stop.wait()
    finally:
        await node.stop()
        await local.close()
    return 0


async def cmd_invite(args: argparse.Namespace) -> int:
    from node.config import load_config
    from node.trust import create_invite

    local = await _open(args)
    try:
        addresses = list(args.address or [])
        if not addresses:
            status = _api(local.path, "GET", "/v1/status")
            if status:
                addresses = list(status.get("advertise", []))
            else:
                addresses = list(
                    load_config(Path(args.config) if args.config else None).advertised()
                )
        invite = await create_invite(local, addresses, _now_ms(), _hours(args.hours))
    finally:
        await local.close()
    _notify(local.path)
    print(invite.to_code())
    print(
        f"(valid until {_when(invite.expires)}, once; give it only to the organisation you mean "
        "to trust, over a channel you trust)",
        file=sys.stderr,
    )
    return 0


async def cmd_accept(args: argparse.Namespace) -> int:
    from node.trust import accept_invite

    local = await _open(args)
    try:
        peer = await accept_invite(local, args.code, _now_ms())
    finally:
        await local.close()
    _notify(local.path)
    print(f"trusted {peer.label}")
    print(f"  id:          {peer.node_id}")
    print(f"  safety code: {peer.node_id.safety_code()}")
    print(f"  addresses:   {', '.join(peer.addresses) or '(none)'}")
    return 0


async def cmd_trust(args: argparse.Namespace) -> int:
    from node.trust import trust_node

    local = await _open(args)
    try:
        peer = await trust_node(local, args.id, args.address, args.name or "", _now_ms())
    finally:
        await local.close()
    _notify(local.path)
    print(f"trusted {peer.label}; safety code {peer.node_id.safety_code()}")
    return 0


async def cmd_distrust(args: argparse.Namespace) -> int:
    from node.trust import distrust

    local = await _open(args)
    try:
        peer = await distrust(local, args.peer)
    finally:
        await local.close()
    _notify(local.path)
    print(f"trust withdrawn from {peer.label}")
    return 0


async def cmd_peers(args: argparse.Namespace) -> int:
    from collections import Counter

    from node.revocation import revoked_ids
    from protocol.names import name_key

    local = await _open(args)
    try:
        peers = await local.peers()
        revoked = await revoked_ids(local)
    finally:
        await local.close()
    live = _api(local.path, "GET", "/v1/peers")
    live_rows = {row["id"]: row for row in live["peers"]} if live else {}
    rows = []
    for node_id, peer in sorted(peers.items(), key=lambda kv: kv[1].label):
        row = live_rows.get(str(node_id), {})
        rows.append(
            {
                "id": str(node_id),
                "name": peer.name,
                "safety_code": node_id.safety_code(),
                "addresses": peer.addresses,
                "state": "revoked"
                if node_id in revoked
                else row.get("state", "node not running" if live is None else "offline"),
                "revoked": node_id in revoked,
                "banned_for_s": row.get("banned_for_s", 0.0),
                "last_sync": row.get("last_sync", peer.last_sync),
                "score": row.get("score"),
                "last_error": row.get("last_error", "")
                or ("key revoked (compromised)" if node_id in revoked else ""),
                "invite_pending": peer.invite_capability is not None,
            }
        )
    if args.json:
        _print_json({"peers": rows})
        return 0
    if not rows:
        print("no trusted peers yet: `canopy invite` / `canopy accept CODE`")
        return 0
    # A name more than one peer goes by is never shown alone: one may pose as the other.
    keys = Counter(name_key(r["name"]) for r in rows if r["name"])
    _table(
        [
            [
                (r["name"] + f" ({r['id'][:10]})" if keys[name_key(r["name"])] > 1 else r["name"])
                or "-",
                r["id"][:16],
                r["state"],
                _when(r["last_sync"]),
                "-" if r["score"] is None else str(r["score"]),
                r["last_error"][:40],
            ]
            for r in rows
        ],
        ["NAME", "ID", "STATE", "LAST SYNC", "SCORE", "LAST ERROR"],
    )
    return 0


async def cmd_publish_guide(args: argparse.Namespace) -> int:
    from node.content import publish_guides

    local = await _open(args)
    try:
        published = await publish_guides(
            local,
            [Path(f) for f in args.files],
            title=args.title,
            lang=args.lang or "",
            topics=list(args.topic or []),
            region=args.region or "",
            to=args.to,
            now_ms=_now_ms(),
            replaces=args.replaces,
        )
    finally:
        await local.close()
    _notify(local.path)
    if args.replaces:
        print(f"withdrew {args.replaces} (superseded)")
    for record, title in published:
        print(f"{record.id.hex()}  {title}  (to {args.to})")
    return 0


async def cmd_alert(args: argparse.Namespace) -> int:
    from node.content import publish_alert
    from protocol import limits

    local = await _open(args)
    try:
        record = await publish_alert(
            local,
            args.text,
            to=args.to,
            urgency=args.urgency,
            now_ms=_now_ms(),
            lifetime_ms=int(args.hours * 3600 * 1000)
            if args.hours
            else limits.DEFAULT_ALERT_LIFETIME_MS,
        )
    finally:
        await local.close()
    _notify(local.path)
    print(f"{record.id.hex()}  alert ({args.urgency}) to {args.to}")
    return 0


async def cmd_watch(args: argparse.Namespace) -> int:
    """Print alerts as the running node receives them (Ctrl-C to stop)."""
    from node.local import read_runtime

    path = _data_dir(args)
    runtime = read_runtime(path)
    if runtime is None:
        raise CanopyError(f"no node is running on {path}; start it with: canopy run")
    import aiohttp

    headers = {"Authorization": f"Bearer {runtime['token']}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            async with http.get(runtime["api"] + "/v1/watch", headers=headers) as response:
                if response.status != 200:
                    raise CanopyError(f"the node refused: HTTP {response.status}")
                print("watching for alerts (Ctrl-C to stop)", file=sys.stderr, flush=True)
                async for line in response.content:
                    if not line.strip():
                        continue
                    entry = json.loads(line)
                    if args.json:
                        print(json.dumps(entry), flush=True)
                    elif entry.get("readable"):
                        mark = "!!" if entry.get("urgency") == "high" else "--"
                        when = _when(int(entry["created"]))
                        print(f"{mark} {when} from {entry['from']}: {entry['text']}", flush=True)
        except aiohttp.ClientError as exc:
            raise CanopyError(f"lost the node: {type(exc).__name__}") from None
    return 0


async def cmd_withdraw(args: argparse.Namespace) -> int:
    from node.directory import withdraw

    local = await _open(args)
    try:
        tombstone = await withdraw(local, args.id, _now_ms())
    finally:
        await local.close()
    _notify(local.path)
    print(f"withdrew {args.id}; the withdrawal ({tombstone.id.hex()[:12]}) purges it everywhere")
    return 0


# -- know-who --------------------------------------------------------------------------------


async def cmd_contact_add(args: argparse.Namespace) -> int:
    from node.directory import add_contact

    local = await _open(args)
    try:
        added = await add_contact(
            local,
            kind=args.kind,
            name=args.name,
            region=args.region,
            langs=list(args.lang or []),
            channels=list(args.channel or []),
            specialties=list(args.specialty or []),
            notes=args.notes or "",
            share=args.share,
            to=args.to,
            review_days=args.review_days,
            now_ms=_now_ms(),
        )
    finally:
        await local.close()
    _notify(local.path)
    what = {
        "peers": "readable by your peers only, never passed on",
        "network": "readable by the whole network",
        "on-request": "others see that it exists; details only by introduction",
        "private": "never leaves this node",
    }[added.share.value]
    print(f"{added.record.id.hex()}  {args.kind} contact, share {added.share.value} ({what})")
    if added.details is not None:
        print(
            f"(details kept here as {added.details.id.hex()[:12]}; the id above is what others see)"
        )
    return 0


def _stars(row: dict[str, Any]) -> str:
    vouchers = row.get("vouchers", [])
    names = ", ".join(
        f"{v['label']}" + (f" (d{v['distance']})" if v.get("distance") is not None else "")
        for v in vouchers
    )
    return names


def _print_hits(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no contacts match")
        return
    for row in rows:
        mark = " [STALE: due for re-verification]" if row["stale"] else ""
        if row.get("unverified"):
            mark += " [UNVERIFIED: every voucher's key was revoked]"
        langs = ",".join(row["langs"]) or "-"
        if row["teaser"]:
            title = f"(on request) {row['kind']} in {row['region']}, {langs}"
        else:
            title = f"{row['name']} — {row['kind']} in {row['region']}, {langs}"
        via = f"  via {row['via']}" if "via" in row else ""
        print(f"{row['id'][:12]}  {title}{mark}")
        if row.get("specialties"):
            print(f"    specialties: {', '.join(row['specialties'])}")
        for channel in row.get("channels", []):
            print(f"    {channel}")
        if row["teaser"]:
            print(f"    ask for an introduction: canopy introduce {row['id'][:12]}")
        print(
            f"    vouched by: {_stars(row)}; trust distance {row['distance']};"
            f" score {row['score']}{via}"
        )


async def cmd_query(args: argparse.Namespace) -> int:
    from node.directory import local_query
    from protocol import limits
    from protocol.contact import Filter

    flt = Filter.build(
        " ".join(args.text or []), args.kind or "", args.region or "", args.lang or ""
    )
    if not 1 <= args.limit <= limits.MAX_LOCAL_RESULTS:
        raise UsageError(f"--limit must be between 1 and {limits.MAX_LOCAL_RESULTS}")
    if not 1 <= args.depth <= limits.MAX_QUERY_DEPTH:
        raise UsageError(f"--depth must be between 1 and {limits.MAX_QUERY_DEPTH}")
    path = _data_dir(args)
    body = {
        "text": flt.text,
        "kind": flt.kind,
        "region": flt.region,
        "lang": flt.lang,
        "limit": args.limit,
        "depth": args.depth,
        "network": bool(args.network),
    }
    local = await _open(args)  # checks the passphrase even when the node answers
    try:
        timeout = limits.QUERY_TIMEOUT_MS / 1000 + 10
        result = _api(local.path, "POST", "/v1/query", body, timeout=timeout)
        if result is None:
            if args.network:
                raise CanopyError(
                    f"--network needs the node running on {path}: start it with canopy run"
                )
            result = {"results": await local_query(local, flt, _now_ms(), args.limit)}
    finally:
        await local.close()
    if args.json:
        _print_json(result)
        return 0
    _print_hits(result["results"])
    if args.network:
        print(
            f"({result['asked']} peers asked, {result['answered']} answered"
            f" in {result['elapsed_ms']} ms)",
            file=sys.stderr,
        )
    return 0


async def cmd_vouch(args: argparse.Namespace) -> int:
    from node.directory import vouch

    local = await _open(args)
    try:
        record, what = await vouch(local, args.target, _now_ms())
    finally:
        await local.close()
    _notify(local.path)
    print(f"{record.id.hex()}  you vouch for {what} (withdraw it with: canopy withdraw ID)")
    return 0


async def cmd_review(args: argparse.Namespace) -> int:
    from node.directory import review

    local = await _open(args)
    try:
        rows = await review(local, _now_ms())
    finally:
        await local.close()
    if args.json:
        _print_json({"due": rows})
        return 0
    if not rows:
        print("no contacts are due for re-verification")
        return 0
    _table(
        [
            [r["id"][:12], r["state"], _when(r["due"]), r["kind"], r["region"], r["name"] or "-"]
            for r in rows
        ],
        ["ID", "STATE", "DUE", "KIND", "REGION", "NAME"],
    )
    print("re-verify a contact, then renew it with: canopy vouch ID", file=sys.stderr)
    return 0


async def cmd_introduce(args: argparse.Namespace) -> int:
    from node.directory import request_introduction

    local = await _open(args)
    try:
        row = await request_introduction(local, args.id, args.note or "", _now_ms())
    finally:
        await local.close()
    _notify(local.path)
    request_id = row["request_id"]
    assert isinstance(request_id, bytes)
    print(
        f"introduction requested ({request_id.hex()[:12]}); it goes out while the node runs."
        " Follow it with: canopy introductions"
    )
    return 0


async def cmd_introductions(args: argparse.Namespace) -> int:
    from node.directory import decide, introductions

    if args.approve and args.decline:
        raise UsageError("--approve and --decline exclude each other")
    local = await _open(args)
    try:
        if args.approve or args.decline:
            row = await decide(local, args.approve or args.decline, bool(args.approve), _now_ms())
            decided = str(row["status"])
        else:
            decided = ""
        rows = await introductions(local)
    finally:
        await local.close()
    if decided:
        _notify(local.path)
        print(f"{decided}: {(args.approve or args.decline)}")
        return 0
    if args.json:
        _print_json({"introductions": rows})
        return 0
    if not rows:
        print("no introduction requests")
        return 0
    _table(
        [
            [
                r["id"][:12],
                r["direction"],
                r["status"],
                f"{r['kind']} {r['region']}",
                (r["asker"] if r["direction"] == "incoming" else r["introducer"])[:16],
                str(r["note"])[:40],
            ]
            for r in rows
        ],
        ["ID", "DIRECTION", "STATUS", "CONTACT", "WHO", "NOTE"],
    )
    return 0


async def cmd_guides(args: argparse.Namespace) -> int:
    from node.content import readable
    from node.revocation import revoked_ids
    from protocol.content import Guide
    from protocol.record import Kind

    local = await _open(args)
    malformed: list[bytes] = []
    try:
        items, unreadable = await readable(local, Kind.GUIDE, _now_ms(), malformed)
        peers = await local.peers()
        revoked = await revoked_ids(local)
    finally:
        await local.close()

    def author(node_id: Any) -> str:
        if node_id == local.node_id:
            return "you"
        peer = peers.get(node_id)
        return peer.label if peer else node_id.short

    guides = [(it, Guide.from_content(it.body.content)) for it in items]  # checked: typed
    rows = [
        {
            "id": it.record.id.hex(),
            "title": guide.title,
            "lang": guide.lang,
            "region": guide.region,
            "topics": list(guide.topics),
            "author": str(it.record.author),
            "author_label": author(it.record.author),
            "created": it.record.created,
            "scope": it.record.scope.name.lower(),
            # Its author's key was revoked: anyone holding the key may have written it.
            "unverified": it.record.author in revoked,
        }
        for it, guide in sorted(guides, key=lambda pair: -pair[0].record.created)
    ]
    if args.json:
        _print_json(
            {"guides": rows, "held_unreadable": unreadable, "held_malformed": len(malformed)}
        )
        return 0
    if rows:
        _table(
            [
                [
                    r["id"][:12],
                    str(r["title"])[:48],
                    str(r["lang"]),
                    r["author_label"] + (" UNVERIFIED (key revoked)" if r["unverified"] else ""),
                    _when(r["created"]),
                ]
                for r in rows
            ],
            ["ID", "TITLE", "LANG", "FROM", "PUBLISHED"],
        )
    else:
        print("no guides this node can read")
    if unreadable:
        print(f"({unreadable} more held for others, unreadable here)")
    if malformed:
        print(f"({len(malformed)} malformed, not shown: their content breaks the guide schema)")
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    from node.content import find
    from protocol.content import Alert, Guide
    from protocol.record import Kind

    local = await _open(args)
    try:
        item = await find(local, args.id, _now_ms())
        peers = await local.peers()
    finally:
        await local.close()
    content = item.body.content
    peer = peers.get(item.record.author)
    if args.json:
        _print_json(
            {
                "id": item.record.id.hex(),
                "kind": str(item.record.kind),
                "author": str(item.record.author),
                "created": item.record.created,
                "expires": item.record.expires,
                "content": {k: v for k, v in content.items() if not isinstance(v, bytes)},
            }
        )
        return 0
    who = (
        "you"
        if item.record.author == local.node_id
        else (peer.label if peer else item.record.author.short)
    )
    # open_record checked the content against its kind's schema: typed from here on.
    if item.record.kind is Kind.GUIDE:
        guide = Guide.from_content(content)
        title, text = guide.title, guide.text
        meta = [f"{k}: {v}" for k, v in (("lang", guide.lang), ("region", guide.region)) if v]
        if guide.topics:
            meta.append("topics: " + ", ".join(guide.topics))
    elif item.record.kind is Kind.ALERT:
        alert = Alert.from_content(content)
        title, text, meta = f"alert ({alert.urgency})", alert.text, []
    else:
        title, text, meta = str(item.record.kind), "(see: canopy show --json)", []
    print(f"# {title}")
    print(f"id: {item.record.id.hex()}")
    print(
        f"from: {who}   published: {_when(item.record.created)}"
        f"   expires: {_when(item.record.expires)}"
    )
    if meta:
        print("   ".join(meta))
    print()
    print(text)
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    from node.revocation import revoked_ids

    local = await _open(args)
    try:
        counts = await local.store.count_by_kind()
        rejections = await local.store.rejections()
        peers = await local.peers()
        name = await local.name()
        revoked = await revoked_ids(local)
    finally:
        await local.close()
    live = _api(local.path, "GET", "/v1/status")
    live_peers = _api(local.path, "GET", "/v1/peers") if live else None
    live_rows = {row["id"]: row for row in live_peers["peers"]} if live_peers else {}
    now = _now_ms()
    peer_list = []
    for node_id, peer in sorted(peers.items(), key=lambda kv: kv[1].label):
        row = live_rows.get(str(node_id), {})
        last_sync = row.get("last_sync", peer.last_sync)
        peer_list.append(
            {
                "id": str(node_id),
                "short": node_id.short,
                "name": peer.name,
                "state": row.get("state", "offline" if live else "node not running"),
                "last_sync": last_sync,
                "sync_age_s": round((now - last_sync) / 1000, 1) if last_sync else None,
            }
        )
    # Rejections: what the store has counted (all time), plus what the running node has
    # counted since it last wrote them; the live figures are the node's since it started.
    status = {
        "id": str(local.node_id),
        "name": name,
        "safety_code": local.node_id.safety_code(),
        "running": live is not None,
        "uptime_s": live.get("uptime_s") if live else None,
        "listen": live.get("listen") if live else None,
        "peers": len(peers),
        "connected": live.get("connected") if live else 0,
        "peer_list": peer_list,
        "records": counts,
        "rejected": live.get("rejected", rejections) if live else rejections,
        "revoked": sorted(str(n) for n in revoked),
        "own_key_revoked": local.node_id in revoked,
        "rejected_all_time": rejections,
        "sync": {
            "lag_s": live.get("sync_lag_s") if live else None,
            "inflight": live.get("inflight", 0) if live else 0,
            "received": live.get("received", 0) if live else 0,
        },
        "traffic": live.get("traffic", {}) if live else {},
        "knowwho": live.get("knowwho") if live else None,
    }
    if args.json:
        _print_json(status)
        return 0
    uptime = f"yes, up {_duration(float(status['uptime_s']))}" if live else "no"
    print(f"node:       {status['name'] or '-'} {status['id']}")
    print(f"safety:     {status['safety_code']}")
    print(f"running:    {uptime}")
    print(f"peers:      {status['peers']} trusted, {status['connected']} connected")
    print(f"records:    {', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'}")
    rejected = status["rejected"]
    print(f"rejected:   {', '.join(f'{k} {v}' for k, v in sorted(rejected.items())) or 'none'}")
    if status["own_key_revoked"]:
        print("WARNING:    THIS NODE'S KEY IS REVOKED; peers refuse it. Create a new identity.")
    for node_id in revoked:
        if node_id != local.node_id:
            who = peers[node_id].label if node_id in peers else node_id.short
            print(f"REVOKED:    {who}: key compromised; its guides are unverified")
    if live:
        sync = status["sync"]
        lag = "-" if not sync["lag_s"] else _duration(float(sync["lag_s"]))
        print(
            f"sync:       lag {lag}, {sync['inflight']} records in flight, {sync['received']}"
            " received since start"
        )
        knowwho = status["knowwho"] or {}
        print(
            f"know-who:   {knowwho.get('contacts', 0)} contacts indexed"
            if knowwho.get("ready")
            else "know-who:   building the index (queries wait for it)"
        )
    if peer_list:
        print()
        _table(
            [
                [
                    p["name"] or "-",
                    p["short"],
                    p["state"],
                    _when(p["last_sync"]),
                    "-" if p["sync_age_s"] is None else _duration(p["sync_age_s"]) + " ago",
                ]
                for p in peer_list
            ],
            ["PEER", "ID", "STATE", "LAST SYNC", "AGE"],
        )
    return 0


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


async def cmd_export(args: argparse.Namespace) -> int:
    from node.bundles import export_bundle

    local = await _open(args)
    try:
        done = await export_bundle(local, args.peer, Path(args.out), _now_ms())
    finally:
        await local.close()
    print(
        f"wrote {args.out}: {done.records} records for {done.peer_label} "
        f"({done.bytes} bytes, encrypted to that peer and signed by this node)"
    )
    return 0


async def cmd_import(args: argparse.Namespace) -> int:
    from node.bundles import import_bundle
    from node.local import read_runtime

    file = Path(args.file).resolve()
    local = await _open(args)
    try:
        # A running node imports the bundle itself, through its own accept path (revocations
        # refused at once, alerts announced, index updated); without one, the same path here.
        answer = (
            _api(local.path, "POST", "/v1/import", {"file": str(file)}, timeout=3600)
            if read_runtime(local.path) is not None
            else None
        )
        if answer is None:
            done = await import_bundle(local, file, _now_ms())
    finally:
        await local.close()
    if answer is not None:
        label, records, new = answer["sender_label"], answer["records"], answer["new"]
        print(f"import: {records}/{records} records (by the running node)", file=sys.stderr)
        reasons: dict[str, int] = dict(answer["rejected"])
    else:
        _notify(local.path)
        label, records, new, reasons = done.sender_label, done.records, done.new, done.rejected
    rejected = sum(reasons.values())
    held = records - new - rejected
    print(
        f"imported from {label}: {new} new, {held} already held, "
        f"{rejected} rejected"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if rejected else "")
    )
    return 0


async def cmd_backup(args: argparse.Namespace) -> int:
    from node.backups import make_backup

    local = await _open(args)
    try:
        if Path(args.out).exists():
            raise CanopyError(f"{args.out} already exists; choose a new file name")
        from node.local import Local

        # The backup is encrypted with the node's passphrase; a node without one must be
        # given a passphrase for the backup all the same (it leaves the machine).
        passphrase = (
            _passphrase(args)
            if Local.key_needs_passphrase(local.path)
            else _passphrase(args, confirm=True)
        )
        size = await make_backup(local, Path(args.out), passphrase, _now_ms())
    finally:
        await local.close()
    print(f"wrote {args.out} ({size} bytes, encrypted with the passphrase)")
    print("keep it away from this machine; restore with: canopy restore FILE", file=sys.stderr)
    return 0


async def cmd_restore(args: argparse.Namespace) -> int:
    from node.backups import restore_backup

    target = Path(args.restore_data).expanduser() if args.restore_data else _data_dir(args)
    done = await restore_backup(Path(args.file), target, _passphrase(args), force=args.force)
    records = ", ".join(f"{k} {v}" for k, v in sorted(done.records.items())) or "no records"
    print(f"restored {done.node_id} into {target} (backup of {_when(done.created)}; {records})")
    return 0


async def cmd_config_check(args: argparse.Namespace) -> int:
    from node.config import load_config

    config = load_config(Path(args.file))
    print(f"{args.file}: ok (listen {config.listen}, api {config.api_listen})")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    if args.know_who:
        from node.demo_knowwho import run_knowwho_demo

        return await run_knowwho_demo(keep=args.keep)
    from node.demo import run_demo

    return await run_demo(keep=args.keep)


# -- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="canopy",
        description="Share protection know-how and know-who with organisations you trust.",
    )
    parser.add_argument(
        "--data", metavar="DIR", help="data directory (default: $CANOPY_DATA or the user data dir)"
    )
    parser.add_argument(
        "--passphrase-file", metavar="F", help="read the passphrase from F (unattended use)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(
        name: str, func: Callable[[argparse.Namespace], Awaitable[int]], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("init", cmd_init, "create this node's identity")
    p.add_argument("--name", help="your organisation's name, shown to peers")
    p.add_argument(
        "--no-passphrase",
        action="store_true",
        help="store the key unencrypted (unattended servers only)",
    )

    p = add("run", cmd_run, "run the node in the foreground")
    p.add_argument("--listen", metavar="HOST:PORT")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--verbose", action="store_true", help="log at debug level")
    p.add_argument(
        "--log-format", choices=["text", "json"], help="log lines on stderr (default: config)"
    )

    p = add("id", cmd_id, "show node id, safety code and addresses")
    p.add_argument("--json", action="store_true")
    p.add_argument("--config", metavar="FILE")

    p = add("invite", cmd_invite, "print a one-time invite code")
    p.add_argument(
        "--address", action="append", metavar="URL", help="where you can be reached (repeatable)"
    )
    p.add_argument("--hours", type=float, default=168.0, help="validity (default 168 = 7 days)")
    p.add_argument("--config", metavar="FILE")

    p = add("accept", cmd_accept, "trust the node that gave you an invite code")
    p.add_argument("code")

    p = add("trust", cmd_trust, "trust a node whose id and safety code you compared out of band")
    p.add_argument("id")
    p.add_argument("--address", metavar="URL")
    p.add_argument("--name")

    p = add("peers", cmd_peers, "list trusted peers")
    p.add_argument("--json", action="store_true")

    p = add("distrust", cmd_distrust, "withdraw trust from a peer at once")
    p.add_argument("peer")

    p = add("publish", cmd_publish_guide, "publish content")
    kinds = p.add_subparsers(dest="what", metavar="KIND", parser_class=_Parser, required=True)
    g = kinds.add_parser("guide", help="publish Markdown guides, one record per file")
    g.set_defaults(func=cmd_publish_guide)
    g.add_argument("files", nargs="+", metavar="FILE")
    g.add_argument("--title")
    g.add_argument("--lang")
    g.add_argument("--topic", action="append")
    g.add_argument("--region")
    g.add_argument("--to", default="peers", help="peers | network | ID[,ID...] (default peers)")
    g.add_argument("--replaces", metavar="ID", help="this is a new version of your guide ID")

    p = add("alert", cmd_alert, "publish an urgent alert, pushed ahead of everything else")
    p.add_argument("text")
    p.add_argument("--to", default="network", help="peers | network | ID[,ID...] (default network)")
    p.add_argument("--urgency", choices=["normal", "high"], default="normal")
    p.add_argument("--hours", type=float, help="how long the alert stays (default 7 days)")

    p = add("watch", cmd_watch, "print alerts as they arrive (needs the node running)")
    p.add_argument("--json", action="store_true", help="one JSON document per line")

    p = add("contact", cmd_contact_add, "add a contact to the know-who directory")
    acts = p.add_subparsers(dest="what", metavar="ACTION", parser_class=_Parser, required=True)
    c = acts.add_parser("add", help="add a vetted contact")
    c.set_defaults(func=cmd_contact_add)
    c.add_argument("--kind", required=True, help="lawyer, shelter, medical, psychosocial, ...")
    c.add_argument("--name", required=True)
    c.add_argument("--region", required=True, help="ISO 3166 code: KE or KE-30")
    c.add_argument("--lang", action="append", help="BCP 47 tag, repeatable: sw, fr-CD")
    c.add_argument("--channel", action="append", metavar="TYPE:VALUE", help="repeatable")
    c.add_argument("--specialty", action="append", help="repeatable: land-rights")
    c.add_argument("--notes")
    c.add_argument(
        "--share", default="peers", help="peers | network | on-request | private (default peers)"
    )
    c.add_argument("--to", help="with --share peers: only these peers (ID[,ID...])")
    c.add_argument("--review-days", type=int, default=180, help="re-verify after (default 180)")

    p = add("query", cmd_query, "search the know-who directory (offline, or --network)")
    p.add_argument("text", nargs="*")
    p.add_argument("--kind")
    p.add_argument("--region")
    p.add_argument("--lang")
    p.add_argument("--network", action="store_true", help="also ask trusted peers (node running)")
    p.add_argument("--depth", type=int, default=2, help="network hops (default 2)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")

    p = add("vouch", cmd_vouch, "vouch for a contact (record id) or an organisation (peer)")
    p.add_argument("target", metavar="PEER|CONTACT_ID")

    p = add("review", cmd_review, "contacts due for re-verification")
    p.add_argument("--json", action="store_true")

    p = add("introduce", cmd_introduce, "ask for an introduction to an on-request contact")
    p.add_argument("id")
    p.add_argument("--note", help="a short message for the organisation that decides")

    p = add("introductions", cmd_introductions, "introduction requests, to and from you")
    p.add_argument("--approve", metavar="REQUEST_ID")
    p.add_argument("--decline", metavar="REQUEST_ID")
    p.add_argument("--json", action="store_true")

    p = add("withdraw", cmd_withdraw, "withdraw one of your records everywhere")
    p.add_argument("id")

    p = add("guides", cmd_guides, "list the guides this node can read")
    p.add_argument("--json", action="store_true")

    p = add("show", cmd_show, "show one record")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    p = add("status", cmd_status, "identity, uptime, peers, records, rejected inputs, sync")
    p.add_argument("--json", action="store_true")

    p = add("revocation", cmd_revocation_export, "this node's pre-signed revocation certificate")
    rev = p.add_subparsers(dest="what", metavar="ACTION", parser_class=_Parser, required=True)
    r = rev.add_parser("export", help="print it (or write it to --out FILE); keep it offline")
    r.set_defaults(func=cmd_revocation_export)
    r.add_argument("--out", metavar="FILE")

    p = add("revoke-key", cmd_revoke_key, "publish a revocation: this node's key, or --certificate")
    p.add_argument("--certificate", metavar="FILE", help="a certificate exported by another node")

    p = add("exposure", cmd_exposure, "which peers received which records by ID from this node")
    p.add_argument("id", help="node id (or a trusted peer's name or id prefix)")
    p.add_argument("--json", action="store_true")

    p = add("wipe", cmd_wipe, "destroy this node's keys at once: the data becomes unreadable")
    p.add_argument("--yes", action="store_true", help="really destroy them")
    p = add("export", cmd_export, "write a bundle for one peer to carry by hand (USB stick)")
    p.add_argument("--for", dest="peer", required=True, metavar="PEER", help="id, prefix or name")
    p.add_argument("--out", required=True, metavar="FILE", help="a new file")

    p = add("import", cmd_import, "take in a bundle a peer exported for this node")
    p.add_argument("file")

    p = add("backup", cmd_backup, "write an encrypted backup of this node (key and database)")
    p.add_argument("--out", required=True, metavar="FILE", help="a new file")

    p = add("restore", cmd_restore, "recreate a data directory from a backup")
    p.add_argument("file")
    p.add_argument(
        "--data", dest="restore_data", metavar="DIR", help="where to restore (default: --data)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing identity")

    p = add("config", cmd_config_check, "check a configuration file")
    cfg = p.add_subparsers(dest="what", metavar="ACTION", parser_class=_Parser, required=True)
    c = cfg.add_parser("check", help="validate FILE")
    c.set_defaults(func=cmd_config_check)
    c.add_argument("file")

    p = add("demo", cmd_demo, "three nodes on loopback doing the whole story")
    p.add_argument("--keep", action="store_true", help="keep the demo's data directories")
    p.add_argument(
        "--know-who", action="store_true", help="the know-who story: contacts, queries, intros"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    if isinstance(sys.stdout, _Printable):  # called from inside the CLI
        return _main(argv)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Printable(out), _Printable(err)  # type: ignore[assignment]
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        return asyncio.run(args.func(args))
    except UsageError as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CanopyError as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a file or directory the user named
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"canopy: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("canopy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
