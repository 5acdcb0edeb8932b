"""Running real `canopy run` processes, polling their local API, the ceiling and floor, figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random as stdrandom
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nacl.utils

from bench.data import BATCH, ROOT, NodeDir, progress
from node.clock import now_ms
from node.content import row_of
from node.demo import free_port as free_port  # re-exported: the benchmarks' ports
from node.store import Store
from protocol.envelope import open_record
from protocol.identity import Identity
from protocol.record import Record

# Every process started by the harness, so that nothing outlives a run (also on errors).
_LIVE: dict[int, asyncio.subprocess.Process] = {}
_NODES: set[Node] = set()


def kill_all_sync() -> None:
    """Last resort (atexit / signal): SIGKILL every process this harness started."""
    for pid, proc in list(_LIVE.items()):
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _LIVE.pop(pid, None)


class Node:
    """A data directory and, while running, its `canopy run` child process."""

    def __init__(self, d: NodeDir, env: dict[str, str] | None = None) -> None:
        self.dir = d
        self.proc: asyncio.subprocess.Process | None = None
        self.env = {
            **os.environ,
            "CANOPY_SYNC_POLL_INTERVAL": "0.2",
            "CANOPY_NETWORK_RECONNECT_MAX": "2",
            **(env or {}),
        }
        self.env.pop("CANOPY_DATA", None)
        self.spawned_at = 0.0  # time.monotonic() when the process was spawned
        self.running_at = 0.0  # when its "running" line was read
        self.api = ""
        self.token = ""
        self._http: aiohttp.ClientSession | None = None
        self._stdout_task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return self.dir.label

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        log = open(self.dir.path.parent / f"{self.label}.log", "ab")  # noqa: SIM115
        self.spawned_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            "--data",
            str(self.dir.path),
            "run",
            "--listen",
            f"127.0.0.1:{self.dir.port}",
            cwd=str(ROOT),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        log.close()
        _LIVE[self.proc.pid] = self.proc
        _NODES.add(self)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        self.running_at = time.monotonic()
        if b"running" not in line:
            raise RuntimeError(f"node {self.label} did not start; see its log in {self.dir.path}")
        # Keep draining stdout so that the child never blocks on a full pipe.
        self._stdout_task = asyncio.create_task(self._drain())
        runtime = json.loads((self.dir.path / "node.json").read_text())
        self.api, self.token = runtime["api"], runtime["token"]
        self._http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass

    async def get(self, route: str) -> dict[str, Any]:
        assert self._http is not None, f"{self.label} is not running"
        async with self._http.get(self.api + route) as response:
            if response.status != 200:
                raise RuntimeError(f"{self.label} {route}: HTTP {response.status}")
            data: dict[str, Any] = await response.json()
            return data

    async def status(self) -> dict[str, Any]:
        return await self.get("/v1/status")

    async def total(self) -> int:
        return sum((await self.status())["records"].values())

    async def notify(self) -> None:
        assert self._http is not None
        async with self._http.post(self.api + "/v1/notify") as response:
            await response.read()

    def rss_kb(self, field_name: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {field_name} for pid {self.pid}")

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def cli(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            "--data",
            str(self.dir.path),
            *args,
            cwd=str(ROOT),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _LIVE[proc.pid] = proc
        try:
            out, err = await proc.communicate()
        finally:
            _LIVE.pop(proc.pid, None)
        return proc.returncode or 0, out.decode(), err.decode()

    async def stop(self) -> None:
        _NODES.discard(self)
        if self._http is not None:
            await self._http.close()
            self._http = None
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._stdout_task is not None:
            self._stdout_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stdout_task
            self._stdout_task = None
        _LIVE.pop(proc.pid, None)


async def start_all(nodes: list[Node], parallel: int = 6) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(node: Node) -> None:
        async with gate:
            await node.start()

    await asyncio.gather(*(one(n) for n in nodes))


async def stop_all(nodes: list[Node]) -> None:
    await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


@contextlib.asynccontextmanager
async def workspace(name: str) -> AsyncIterator[Path]:
    """A temporary root for data dirs; every node process started meanwhile is ended."""
    root = Path(tempfile.mkdtemp(prefix=f"canopy-bench-{name}-"))
    try:
        yield root
    finally:
        await stop_all(list(_NODES))
        for proc in list(_LIVE.values()):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for pid, proc in list(_LIVE.items()):
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            _LIVE.pop(pid, None)
        if os.environ.get("CANOPY_BENCH_KEEP"):
            progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def load_average() -> float:
    """The machine's 1-minute load average (the machine is shared: figures say how loaded)."""
    return os.getloadavg()[0]


async def wait_for(
    what: str, check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.05
) -> float:
    """Poll `check` until true; returns time.monotonic() at the poll that saw it true."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic()
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


# -- the ceiling and the floor -----------------------------------------------------------------


async def ceiling(
    datas: list[bytes],
    net_key: bytes | Sequence[bytes],
    tmp: Path,
    *,
    reader: Identity | None = None,
    circle_keys: Sequence[bytes] = (),
) -> dict[str, Any]:
    """What ingesting `datas` costs in one process: the libraries alone (the ceiling), and our
    own decode-verify-open-store path without any network or node around it (the floor;
    `reader`, `circle_keys`: see `own_floor`)."""
    load = load_average()
    library = await asyncio.to_thread(library_ceiling, datas, tmp)
    floor = await own_floor(datas, net_key, tmp, reader=reader, circle_keys=circle_keys)
    return {**library, "floor": floor, "load": load}


def library_ceiling(datas: list[bytes], tmp: Path) -> dict[str, Any]:
    """msgpack unpack + Ed25519 verify + SecretBox open + sqlite3 batched insert, per record,
    in a tight loop: what msgpack, libsodium and SQLite can do with no Canopy code between
    them. The SecretBox opened is the record's own size (its sealed payload's ciphertext
    length); the insert is the store's row shape, in WAL with synchronous=FULL, one
    transaction per batch, like the store."""
    import sqlite3

    import msgpack
    import nacl.bindings

    key = nacl.utils.random(32)
    nonce = nacl.utils.random(24)
    prepared = []
    for data in datas:  # not timed: pick out what each library call is given
        record = Record.from_bytes(data)
        payload = record.payload if isinstance(record.payload, bytes) else b""
        boxed = nacl.bindings.crypto_secretbox_easy(bytes(len(payload)), nonce, key)
        signed = record.signature + record.signed_bytes()
        prepared.append((data, signed, record.author.raw, boxed, record))
    path = tmp / "library-ceiling.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE records (seq INTEGER PRIMARY KEY, id BLOB UNIQUE, kind TEXT,"
            " scope INTEGER, created INTEGER, expires INTEGER, author_tag BLOB,"
            " received_at INTEGER, data BLOB)"
        )
        unpack = msgpack.unpackb
        verify = nacl.bindings.crypto_sign_open
        box_open = nacl.bindings.crypto_secretbox_open_easy
        received = now_ms()
        start, cpu_start = time.perf_counter(), time.thread_time()
        for at in range(0, len(prepared), BATCH):
            rows = []
            for data, signed, author, boxed, record in prepared[at : at + BATCH]:
                unpack(data)
                verify(signed, author)
                box_open(boxed, nonce, key)
                rows.append(
                    (
                        record.id,
                        str(record.kind),
                        int(record.scope),
                        record.created,
                        record.expires,
                        author,
                        received,
                        data,
                    )
                )
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR IGNORE INTO records (id, kind, scope, created, expires, author_tag,"
                " received_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute("COMMIT")
        elapsed = time.perf_counter() - start
        cpu = time.thread_time() - cpu_start  # sqlite3 works on this thread too
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    return {
        "records": len(datas),
        "seconds": elapsed,
        "records_per_s": len(datas) / elapsed,
        "cpu_s": cpu,
        "cpu_us_per_record": cpu / len(datas) * 1e6,
    }


async def own_floor(
    datas: list[bytes],
    net_key: bytes | Sequence[bytes],
    tmp: Path,
    *,
    reader: Identity | None = None,
    circle_keys: Sequence[bytes] = (),
) -> dict[str, Any]:
    """Our own code path in one process: decode + verify + open + sealed batched insert.
    `reader` opens (by default a stranger, through the network slot, like a peer) with
    every key of `net_key` (one network's or several) and `circle_keys`."""
    reader = reader or Identity(nacl.utils.random(32))
    path = tmp / "floor.db"
    store = await Store.open(path, nacl.utils.random(32))
    try:
        start = time.perf_counter()
        for at in range(0, len(datas), BATCH):
            rows = []
            for data in datas[at : at + BATCH]:
                record = Record.from_bytes(data)
                record.verify()
                open_record(record, reader, net_key, circle_keys=circle_keys)
                rows.append(row_of(record, local=False))
            await store.put_records(rows, now_ms())
        elapsed = time.perf_counter() - start
    finally:
        await store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    return {"records": len(datas), "seconds": elapsed, "records_per_s": len(datas) / elapsed}


# -- graphs ------------------------------------------------------------------------------------


def random_graph(n: int, degree: float, seed: int) -> list[tuple[int, int]]:
    """A connected random graph with n nodes and round(n * degree / 2) edges (fixed seed)."""
    rng = stdrandom.Random(seed)
    want = min(round(n * degree / 2), n * (n - 1) // 2)
    while True:
        edges: set[tuple[int, int]] = set()
        while len(edges) < want:
            u, v = rng.sample(range(n), 2)
            edges.add((min(u, v), max(u, v)))
        if _connected(n, edges):
            return sorted(edges)


def _connected(n: int, edges: set[tuple[int, int]]) -> bool:
    adj: dict[int, set[int]] = {i: set() for i in range(n)}
    for u, v in edges:
        adj[u].add(v)
        adj[v].add(u)
    seen, todo = {0}, [0]
    while todo:
        for w in adj[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return len(seen) == n


def degrees(n: int, edges: list[tuple[int, int]]) -> list[int]:
    out = [0] * n
    for u, v in edges:
        out[u] += 1
        out[v] += 1
    return out


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one benchmark reports: figures (with targets where the issue sets one) and notes."""

    name: str
    figures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        key: str,
        label: str,
        value: float | None,
        unit: str,
        *,
        target: float | None = None,
        goal: str = "<=",
        fmt: str = "{:,.2f}",
        missing: str = "",
    ) -> None:
        passed: bool | None = None
        if target is not None and value is not None:
            passed = value <= target if goal == "<=" else value >= target
        self.figures.append(
            {
                "key": key,
                "label": label,
                "value": value,
                "unit": unit,
                "target": target,
                "goal": goal if target is not None else None,
                "pass": passed,
                "fmt": fmt,
                "missing": missing,
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "figures": self.figures,
            "notes": self.notes,
            "details": self.details,
        }

    def render(self) -> str:
        lines = [f"== {self.name}"]
        width = max([len(f["label"]) for f in self.figures] + [10])
        for f in self.figures:
            if f["value"] is None:
                shown = f["missing"] or "n/a"
            else:
                shown = f["fmt"].format(f["value"]) + (f" {f['unit']}" if f["unit"] else "")
            line = f"  {f['label']:<{width}}  {shown}"
            if f["target"] is not None:
                verdict = "n/a" if f["pass"] is None else ("PASS" if f["pass"] else "MISS")
                target = f["fmt"].format(f["target"])
                line += f"   (target {f['goal']} {target} {f['unit']}: {verdict})"
            lines.append(line)
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)
