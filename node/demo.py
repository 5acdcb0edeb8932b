"""`canopy demo`: three real nodes on 127.0.0.1 in a temporary directory, doing the story.

A invites B, B invites C; A publishes guides to its peers, to C only, and to the whole
network; each node shows what it can read; C catches up after being down; B survives
kill -9; every data directory is scanned for the guides' plaintext. The processes are
the same `canopy run` a user starts; the tests drive them through `NodeProcess` too.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

PASSPHRASE = "correct horse battery staple (demo only)"
MARKER = "MANGROVE-7731"  # appears in every demo guide; must never appear on disk


_HANDED_OUT: set[int] = set()
_LISTEN_PORTS_FROM = 20000  # listen ports are picked from here up to the ephemeral range


def free_port() -> int:
    """A port a node will listen on later, below the OS's ephemeral range: a port from that
    range (bind to 0) was sometimes taken meanwhile as the local end of one of the many
    outgoing connections a 30-node run makes ('address already in use' at start)."""
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(_LISTEN_PORTS_FROM, low) if low > _LISTEN_PORTS_FROM + 1000 else 0
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port to listen on")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # the Linux default; elsewhere a guess that only narrows the choice


class NodeProcess:
    """A data directory plus, while running, a `canopy run` child process."""

    def __init__(
        self, root: Path, label: str, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.label = label
        self.name = name
        self.data = root / label
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.env = {**os.environ, "CANOPY_PASSPHRASE": PASSPHRASE, **(env or {})}
        self.env.pop("CANOPY_DATA", None)
        self.log_path = root / f"{label}.log"
        self.node_id = ""
        self.preexec: Callable[[], None] | None = None  # run in the child before `canopy run`

    @property
    def address(self) -> str:
        return f"ws://127.0.0.1:{self.port}/canopy"

    async def cli(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            "--data",
            str(self.data),
            *args,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        code = proc.returncode or 0
        if check and code != 0:
            raise RuntimeError(
                f"canopy {' '.join(args)} on {self.label} failed: {err.decode().strip()}"
            )
        return code, out.decode(), err.decode()

    async def api(self, route: str) -> Any:
        """GET `route` from the running node's local API (token from DATA/node.json):
        much quicker than a `canopy` process when a test or the demo polls."""
        runtime = json.loads((self.data / "node.json").read_text())
        request = urllib.request.Request(
            runtime["api"] + route, headers={"Authorization": f"Bearer {runtime['token']}"}
        )

        def fetch() -> Any:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())

        return await asyncio.to_thread(fetch)

    async def json(self, *args: str) -> Any:
        _, out, _ = await self.cli(*args, "--json")
        return json.loads(out)

    async def invite(self, invitee: NodeProcess, *accept_args: str) -> str:
        """Invite `invitee` (the code handed over out of band) and accept it there; the
        output of its `canopy accept`."""
        _, code, _ = await self.cli("invite", "--address", self.address)
        _, out, _ = await invitee.cli("accept", code.strip(), *accept_args)
        return out

    async def init(self) -> str:
        await self.cli("init", "--name", self.name)
        self.node_id = (await self.json("id"))["id"]
        return self.node_id

    async def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            "--data",
            str(self.data),
            "run",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--verbose",
            env={
                **self.env,
                "CANOPY_SYNC_POLL_INTERVAL": "0.2",
                "CANOPY_NETWORK_RECONNECT_MAX": "2",
            },
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            preexec_fn=self.preexec,
        )
        log.close()
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if b"running" not in line:
            raise RuntimeError(f"{self.label} did not start; see {self.log_path}")

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None

    async def kill9(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None


async def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> float:
    """Poll the async `check` until it returns truthy; returns the seconds it took."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


def scan_for(root: Path, needles: list[bytes]) -> tuple[int, list[str]]:
    """Every file under `root`: how many were scanned, and which contain any needle."""
    scanned, hits = 0, []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            scanned += 1
            data = path.read_bytes()
            if any(n in data for n in needles):
                hits.append(str(path))
    return scanned, hits


GUIDES = {
    "peers": ("digital-security-basics.md", "Digital security basics for field staff", "en"),
    "direct": ("shelter-intake.md", "Shelter intake checklist for Dar es Salaam", "sw"),
    "network": ("border-crossing.md", "Crossing a border with a work laptop", "fr"),
    "later": ("after-a-raid.md", "What to do in the first hour after an office raid", "en"),
}


def _guide_text(title: str) -> str:
    return (
        f"# {title}\n\n"
        f"Code word for this demo: {MARKER}.\n\n"
        "1. Keep devices encrypted and powered off when crossing checkpoints.\n"
        "2. Agree on a check-in time and what happens if it is missed.\n"
    )


async def _readable_titles(node: NodeProcess) -> tuple[list[str], int]:
    data = await node.json("guides")
    return sorted(g["title"] for g in data["guides"]), int(data["held_unreadable"])


async def run_demo(keep: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="canopy-demo-"))
    sources = root / "sources"
    sources.mkdir()
    nodes = [
        NodeProcess(root, "A", "Amani Legal Aid (Nairobi)"),
        NodeProcess(root, "B", "Pwani Rights Network (Mombasa)"),
        NodeProcess(root, "C", "Ukombozi Shelter (Dar es Salaam)"),
    ]
    a, b, c = nodes
    say = print
    try:
        say(f"== Canopy demo in {root}")
        for node in nodes:
            await node.init()
            say(f"{node.label}: {node.name:34} id {node.node_id[:16]}…")
        for node in nodes:
            await node.start()
        await a.invite(b)
        await b.invite(c)
        say("A invited B, B invited C (codes exchanged out of band)")

        async def linked() -> bool:
            a_peers = (await a.json("peers"))["peers"]
            b_peers = (await b.json("peers"))["peers"]
            return all(p["state"] == "connected" for p in a_peers + b_peers) and len(b_peers) == 2

        took = await wait_until("A-B and B-C to connect", linked)
        say(
            f"handshakes done: A<->B, B<->C connected in {took:.2f} s"
            " (SHS1 + box-stream over WebSocket)"
        )

        published: dict[str, str] = {}
        for key, to in (("peers", "peers"), ("direct", c.node_id), ("network", "network")):
            filename, title, lang = GUIDES[key]
            path = sources / filename
            path.write_text(_guide_text(title))
            _, out, _ = await a.cli("publish", "guide", str(path), "--lang", lang, "--to", to)
            published[key] = out.split()[0]
            say(
                f"A published {title!r} --to {'C' if key == 'direct' else to}"
                f"  [{published[key][:12]}]"
            )

        expected = {
            "A": sorted(GUIDES[k][1] for k in ("peers", "direct", "network")),
            "B": sorted(GUIDES[k][1] for k in ("peers", "network")),
            "C": sorted(GUIDES[k][1] for k in ("direct", "network")),
        }

        async def delivered() -> bool:
            return all([(await _readable_titles(n))[0] == expected[n.label] for n in nodes])

        took = await wait_until("every node to read what it may", delivered)
        say(f"\n== after {took:.2f} s, what each node can read")
        for node in nodes:
            titles, unreadable = await _readable_titles(node)
            say(
                f"{node.label} ({node.name}) reads {len(titles)},"
                f" holds {unreadable} it cannot read:"
            )
            for title in titles:
                say(f"    - {title}")
        status_b = await b.json("status")
        say(
            f"B relays blind: it stores {sum(status_b['records'].values())} records and reads 2 "
            "(the one for C passed through it sealed)"
        )

        say("\n== C goes down; A publishes; C comes back and catches up")
        await c.stop()
        filename, title, lang = GUIDES["later"]
        path = sources / filename
        path.write_text(_guide_text(title))
        await a.cli("publish", "guide", str(path), "--lang", lang, "--to", "network")
        await c.start()
        expected["C"] = sorted([*expected["C"], title])
        took = await wait_until("C to catch up", lambda: _has_titles(c, expected["C"]))
        say(f"C restarted and read {title!r} after {took:.2f} s")

        say("\n== an alert jumps every queue; a withdrawal purges everywhere")
        await wait_until("C to reconnect", lambda: _connected(c))
        sent = time.time()
        await a.cli(
            "alert", "Checkpoint on the coast road: use the inland route", "--urgency", "high"
        )
        await wait_until("C to get the alert", lambda: _has_alert(c))
        say(f"C got A's alert through B {time.time() - sent:.2f} s after `canopy alert` started")
        await a.cli("withdraw", published["peers"])
        expected["B"] = [t for t in (await _readable_titles(b))[0] if t != GUIDES["peers"][1]]
        took = await wait_until(
            "B to purge the withdrawn guide", lambda: _has_titles(b, expected["B"])
        )
        say(f"A withdrew {GUIDES['peers'][1]!r}; B purged it after {took:.2f} s")

        say("\n== kill -9 B, restart it: nothing it had acknowledged is lost")
        before = (await b.json("status"))["records"]
        await b.kill9()
        after = (await b.json("status"))["records"]
        say(
            f"B records before kill -9: {before}; after: {after}"
            f"  -> {'intact' if before == after else 'LOST'}"
        )
        await b.start()

        say("\n== no plaintext at rest")
        scanned = 0
        hits: list[str] = []
        for node in nodes:
            n, found = scan_for(node.data, [MARKER.encode(), b"checkpoints", b"coast road"])
            scanned += n
            hits += found
        say(
            f"scanned {scanned} files in 3 data directories for the guides' and alert's text: "
            f"{'found in ' + ', '.join(hits) if hits else 'none found'}"
        )
        ok = before == after and not hits
        say("\n== demo " + ("complete" if ok else "FAILED"))
        return 0 if ok else 1
    except (TimeoutError, RuntimeError) as exc:
        say(f"demo failed: {exc}", file=sys.stderr)
        for node in nodes:
            if node.proc is not None:
                _, out, _ = await node.cli("peers", check=False)
                say(f"--- {node.label} peers ---\n{out}", file=sys.stderr)
            if node.log_path.exists():
                tail = node.log_path.read_text(errors="replace").splitlines()[-15:]
                say(f"--- {node.label} log tail ---\n" + "\n".join(tail), file=sys.stderr)
        return 1
    finally:
        for node in nodes:
            await node.stop()
        if keep:
            say(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def _connected(node: NodeProcess) -> bool:
    return any(p["state"] == "connected" for p in (await node.json("peers"))["peers"])


async def _has_alert(node: NodeProcess) -> bool:
    return bool((await node.api("/v1/alerts"))["alerts"])


async def _has_titles(node: NodeProcess, titles: list[str]) -> bool:
    return (await _readable_titles(node))[0] == titles
