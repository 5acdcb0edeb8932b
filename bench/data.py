"""Benchmark data: deterministic identities, sealed guide records (cached), fast data dirs.

Records are generated in chunks by a process pool and cached under .cache/bench/ keyed by
(seed, chunk), so `records(count, seed)` is the first `count` records of one deterministic
stream: the same (count, seed) always gives the same author, network key and record bytes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random as stdrandom
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import nacl.utils

from node.clock import now_ms
from node.content import row_of
from node.local import Local
from node.trust import trust_node
from protocol import limits
from protocol.envelope import seal_record
from protocol.identity import Identity, KeyMaterial, seal_key_file
from protocol.record import Kind, Record, Scope

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
CHUNK = 5000
FORMAT = 2  # bump when the generated records change shape
BATCH = 1000

_WORDS_TEXT = (
    "device encryption checkpoint lawyer shelter border laptop backup phone contact "
    "evidence witness hearing court detention release signal passphrase travel office "
    "raid staff safety plan check-in network partner region language support hotline"
)
WORDS = tuple(_WORDS_TEXT.split())
REGIONS = ("KE", "TZ", "UG", "SO", "ET", "RW", "CD", "SD", "ZA", "NG")
LANGS = ("en", "sw", "fr", "ar", "pt", "so")


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def derive(seed: int, label: str) -> bytes:
    key = f"canopy-bench-{seed}".encode()
    return hashlib.blake2b(label.encode(), key=key, digest_size=32).digest()


def author_identity(seed: int) -> Identity:
    return Identity(derive(seed, "author"))


def network_key(seed: int) -> bytes:
    return derive(seed, "network")


def _guide_content(rng: stdrandom.Random, index: int) -> dict[str, object]:
    words = " ".join(rng.choice(WORDS) for _ in range(52))
    return {
        "title": f"Field guide {index}: {rng.choice(WORDS)} and {rng.choice(WORDS)}",
        "lang": rng.choice(LANGS),
        "topics": [rng.choice(WORDS), rng.choice(WORDS)],
        "region": rng.choice(REGIONS),
        "format": "text/markdown",
        "filename": f"guide-{index}.md",
        "text": f"# Field guide {index}\n\n{words}\n",
    }


def _make_chunk(job: tuple[int, int, int, int]) -> list[bytes]:
    seed, chunk, count, base_ms = job
    identity = author_identity(seed)
    key = network_key(seed)
    rng = stdrandom.Random(seed * 1_000_003 + chunk)
    out: list[bytes] = []
    for i in range(count):
        index = chunk * CHUNK + i
        created = base_ms + index  # distinct, ordered timestamps
        record = seal_record(
            identity,
            Kind.GUIDE,
            _guide_content(rng, index),  # type: ignore[arg-type]
            created=created,
            expires=created + limits.DEFAULT_GUIDE_LIFETIME_MS,
            scope=Scope.NETWORK,
            recipients=(),
            network_key=key,
            random=nacl.utils.random,
        )
        out.append(record.to_bytes())
    return out


def _chunk_path(seed: int, chunk: int) -> Path:
    return CACHE / f"records-v{FORMAT}-seed{seed}-chunk{chunk}.msgpack"


def _load_chunk(path: Path, now_ms: int) -> list[bytes] | None:
    try:
        data = msgpack.unpackb(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("n") != CHUNK:
        return None
    # Records must stay valid for a while longer than any benchmark runs.
    if data.get("min_expires", 0) < now_ms + 24 * 3600 * 1000:
        return None
    if data.get("max_created", 0) > now_ms:
        return None
    records = data.get("records")
    return records if isinstance(records, list) else None


def records(count: int, seed: int) -> list[bytes]:
    """The first `count` records of stream `seed`, generating missing chunks on 2 cores."""
    now = now_ms()
    chunks = (count + CHUNK - 1) // CHUNK
    loaded: dict[int, list[bytes]] = {}
    missing: list[int] = []
    for chunk in range(chunks):
        got = _load_chunk(_chunk_path(seed, chunk), now)
        if got is None:
            missing.append(chunk)
        else:
            loaded[chunk] = got
    if missing:
        CACHE.mkdir(parents=True, exist_ok=True)
        base = now - 30 * 24 * 3600 * 1000  # "published" over the last month
        progress(f"generating {len(missing) * CHUNK:,} sealed records (seed {seed}) on 2 cores…")
        start = time.monotonic()
        jobs = [(seed, chunk, CHUNK, base) for chunk in missing]
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(2, os.cpu_count() or 1)) as pool:
            for chunk, out in zip(missing, pool.imap(_make_chunk, jobs), strict=True):
                loaded[chunk] = out
                first = Record.from_bytes(out[0])
                last = Record.from_bytes(out[-1])
                blob = msgpack.packb(
                    {
                        "n": CHUNK,
                        "min_expires": first.expires,
                        "max_created": last.created,
                        "records": out,
                    }
                )
                tmp = _chunk_path(seed, chunk).with_suffix(".tmp")
                tmp.write_bytes(blob)
                tmp.replace(_chunk_path(seed, chunk))
        progress(f"generated in {time.monotonic() - start:.1f} s (cached in {CACHE})")
    out: list[bytes] = []
    for chunk in range(chunks):
        out.extend(loaded[chunk])
    return out[:count]


# -- data directories ------------------------------------------------------------------------


@dataclass
class NodeDir:
    label: str
    path: Path
    port: int
    node_id: str

    @property
    def address(self) -> str:
        return f"ws://127.0.0.1:{self.port}/canopy"


async def create_dir(
    path: Path, label: str, port: int, net_key: bytes, seed: bytes | None = None
) -> NodeDir:
    """A data directory without a passphrase (no Argon2id); `seed` fixes the identity."""
    if seed is None:
        local = await Local.create(path, label, None, network_key=net_key)
    else:
        # The same layout Local.create writes, but with a chosen identity seed so that
        # cached records can be authored by this node.
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
        material = KeyMaterial(seed=seed, storage_key=nacl.utils.random(32))
        key_path = path / "identity.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(seal_key_file(material, None, nacl.utils.random))
        local = await Local.open(path, None)
        await local.store.set_setting("name", label.encode())
        await local.store.set_setting("network_key", net_key)
    try:
        return NodeDir(label, path, port, str(local.node_id))
    finally:
        await local.close()


async def link_all(nodes: list[NodeDir], edges: list[tuple[int, int]]) -> None:
    """Mutual trust with addresses for every edge, written while the nodes are stopped."""
    now = now_ms()
    neighbours: dict[int, list[int]] = {}
    for u, v in edges:
        neighbours.setdefault(u, []).append(v)
        neighbours.setdefault(v, []).append(u)
    for index, others in neighbours.items():
        local = await Local.open(nodes[index].path, None)
        try:
            for other in others:
                peer = nodes[other]
                await trust_node(local, peer.node_id, peer.address, peer.label, now)
        finally:
            await local.close()


async def insert(path: Path, datas: list[bytes], *, local: bool) -> None:
    """Bulk-insert record bytes into a stopped (or running) node's store, 1000 per batch."""
    store_local = await Local.open(path, None)
    try:
        now = now_ms()
        for start in range(0, len(datas), BATCH):
            rows = [row_of(Record.from_bytes(d), local=local) for d in datas[start : start + BATCH]]
            await store_local.store.put_records(rows, now)
    finally:
        await store_local.close()
