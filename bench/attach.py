"""`python -m bench attach`: one attachment from A to B on loopback (issue 14's target: 100 MB
at >= 30 MB/s and >= 0.5x the raw box-stream + SecretBox throughput of one process measured
in the same run; peak RSS of either node <= 150 MB).

A publishes a guide with the attachment while it is stopped (sealing is the author's time,
reported apart); then both start and B's store is polled until it holds every chunk and
the guide. The ceiling is what one process does with the same bytes and the same
libraries: box-stream encode and decode (4 KiB bodies) plus the SecretBox seal and open of
each 256 KiB chunk, with no Canopy code between them. The nodes' CPU seconds meanwhile
are printed too: on a loaded machine they say more than the wall clock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nacl.bindings
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

from bench.data import create_dir, link_all, network_key, progress
from bench.harness import Node, Result, free_port, stop_all, wait_for, workspace
from protocol import limits
from protocol.attachment import chunk_count

SEED = 14
MB = 1_000_000


def _write_file(path: Path, size: int) -> None:
    """`size` random bytes, written a chunk at a time (the bench holds no whole file)."""
    with path.open("wb") as f:
        left = size
        while left:
            piece = os.urandom(min(left, limits.ATTACHMENT_CHUNK_BYTES))
            f.write(piece)
            left -= len(piece)


def raw_ceiling(path: Path) -> float:
    """MB/s of box-stream encode + decode and SecretBox seal + open over the file's chunks,
    in this one process, by the libraries alone: each 4 KiB body and its header boxed and
    opened with libsodium's `crypto_secretbox_easy`/`_open_easy` through PyNaCl, in place
    in preallocated buffers (two calls a frame each way, as little Python as the format
    allows), and each 256 KiB chunk sealed and opened once (the at-rest seal the receiver
    makes and the open the sender makes). No Canopy code runs in the timed loop."""
    key, box_key = os.urandom(32), os.urandom(32)
    zero = b"\x00" * 24
    most, head = limits.BOXSTREAM_MAX_BODY, limits.BOXSTREAM_HEADER_BYTES
    easy, open_easy = _lib.crypto_secretbox_easy, _lib.crypto_secretbox_open_easy
    size = counter = 0
    header = _ffi.new("unsigned char[]", 18)
    start = time.perf_counter()
    with path.open("rb") as f:
        while piece := f.read(limits.ATTACHMENT_CHUNK_BYTES):
            sealed = nacl.bindings.crypto_secretbox_easy(piece, zero, box_key)
            frames = -(-len(sealed) // most)
            wire = bytearray(len(sealed) + frames * head)
            plain = bytearray(len(sealed))
            src, dst, out = (
                _ffi.from_buffer(sealed),
                _ffi.from_buffer(wire),
                _ffi.from_buffer(plain),
            )
            pos = 0
            for at in range(0, len(sealed), most):
                n = min(most, len(sealed) - at)
                easy(dst + pos + 18, src + at, n, (counter + 1).to_bytes(24, "big"), key)
                hp = n.to_bytes(2, "big") + bytes(wire[pos + 18 : pos + 34])
                easy(dst + pos, hp, 18, counter.to_bytes(24, "big"), key)
                counter += 2
                pos += head + n
            pos, counter = 0, counter - 2 * frames
            for at in range(0, len(sealed), most):
                if open_easy(header, dst + pos, head, counter.to_bytes(24, "big"), key):
                    raise RuntimeError("ceiling: header did not open")
                hp = bytes(_ffi.buffer(header, 18))
                n = (hp[0] << 8) | hp[1]
                wire[pos + 18 : pos + 34] = hp[2:]
                if open_easy(
                    out + at, dst + pos + 18, 16 + n, (counter + 1).to_bytes(24, "big"), key
                ):
                    raise RuntimeError("ceiling: body did not open")
                counter += 2
                pos += head + n
            del src, dst, out
            opened = nacl.bindings.crypto_secretbox_open_easy(bytes(plain), zero, box_key)
            if opened != piece:
                raise RuntimeError("ceiling: round trip differs")
            size += len(opened)
    return size / MB / (time.perf_counter() - start)


async def run(megabytes: float = 100.0, timeout: float = 600.0) -> Result:
    res = Result("attach")
    size = int(megabytes * MB)
    chunks = chunk_count(size)
    async with workspace("attach") as root:
        a_dir = await create_dir(root / "A", "A", free_port(), network_key(SEED))
        b_dir = await create_dir(root / "B", "B", free_port(), network_key(SEED))
        await link_all([a_dir, b_dir], [(0, 1)])
        src = root / "src"
        src.mkdir()
        blob = src / "archive.bin"
        _write_file(blob, size)
        (src / "guide.md").write_text("# Archive\n\nThe archive, attached.\n")
        progress(f"measuring the raw box-stream + SecretBox ceiling over {megabytes:g} MB…")
        ceiling = raw_ceiling(blob)
        a, b = Node(a_dir), Node(b_dir)
        progress(f"A seals a guide with a {megabytes:g} MB attachment ({chunks} chunks)…")
        t0 = time.monotonic()
        code, _, err = await a.cli(
            "publish", "guide", str(src / "guide.md"), "--to", "peers", "--attach", str(blob)
        )
        if code != 0:
            raise RuntimeError(f"publish failed: {err.strip()}")
        sealing = time.monotonic() - t0
        blob.unlink()
        progress("starting A and B; waiting until B holds every chunk and the guide…")
        await a.start()
        await b.start()
        running = max(a.running_at, b.running_at)
        cpu_a, cpu_b = a.cpu_s(), b.cpu_s()

        first: list[float] = []  # when B was first seen holding a chunk

        async def held() -> bool:
            records = (await b.status())["records"]
            if not first and records.get("chunk", 0):
                first.append(time.monotonic())
            return bool(records.get("chunk", 0) >= chunks and records.get("guide", 0) >= 1)

        done = await wait_for(f"B to hold {chunks} chunks", held, timeout, 0.05)
        elapsed = done - running
        cpu_a, cpu_b = a.cpu_s() - cpu_a, b.cpu_s() - cpu_b  # the load on the machine aside
        first_at = (first[0] if first else done) - running
        rate = size / MB / elapsed
        res.add("megabytes", "attachment size", size / MB, "MB", fmt="{:,.1f}")
        res.add("chunks", "chunk records", chunks, "", fmt="{:,.0f}")
        res.add("sealing_s", "A: publish (read, seal, store every chunk)", sealing, "s")
        res.add("seconds", "A to B, from both running to all held", elapsed, "s")
        res.add("first_chunk_s", "of which: until B held a first chunk", first_at, "s")
        res.add("node_mb_per_s", "node transfer rate", rate, "MB/s", target=30.0, goal=">=")
        res.add("cpu_a_s", "A: CPU seconds meanwhile (all threads)", cpu_a, "s")
        res.add("cpu_b_s", "B: CPU seconds meanwhile (all threads)", cpu_b, "s")
        res.add("ceiling_mb_per_s", "ceiling: box-stream + SecretBox (1 process)", ceiling, "MB/s")
        res.add(
            "ratio_to_ceiling",
            "ratio node/ceiling",
            rate / ceiling,
            "x",
            target=0.5,
            goal=">=",
        )
        res.add(
            "peak_rss_a_mb",
            "peak RSS (VmHWM) of A",
            a.rss_kb("VmHWM") / 1024,
            "MB",
            target=150.0,
            fmt="{:.1f}",
        )
        res.add(
            "peak_rss_b_mb",
            "peak RSS (VmHWM) of B",
            b.rss_kb("VmHWM") / 1024,
            "MB",
            target=150.0,
            fmt="{:.1f}",
        )
        await stop_all([a, b])
    return res
