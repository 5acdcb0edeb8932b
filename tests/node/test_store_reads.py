"""What the home page keeps of the store between views (node/web/kept.py) is given again
only while the store is unchanged: a write by this process or by `canopy` in another
process (which the node may never hear about) makes the next view read it again."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import nacl.utils

from node.local import Local
from node.trust import trust_node
from node.web.kept import StoreReads
from protocol.identity import Identity

ROOT = Path(__file__).resolve().parents[2]
ADDR = "ws://127.0.0.1:9/canopy"


async def _cli(data: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANOPY_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "--data", str(data), *args,
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


async def test_kept_store_reads_follow_writes_of_this_process_and_of_the_cli(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    local = await Local.create(data, "Org", None)
    try:
        reads = StoreReads()
        now = int(time.time() * 1000)
        version = await reads.version(local)
        assert await reads.version(local) == version  # nothing written: the same version
        first = await reads.people(local, version, now)
        assert first[0] == {}
        assert await reads.people(local, version, now) is first  # kept, not read again

        ours = Identity.generate(nacl.utils.random)
        await trust_node(local, str(ours.node_id), ADDR, "Ours", now)  # this process
        version = await reads.version(local)
        peers, _ = await reads.people(local, version, now)
        assert set(peers) == {ours.node_id}

        # `canopy trust` in another process, with no running node to tell.
        theirs = Identity.generate(nacl.utils.random)
        await _cli(data, "trust", str(theirs.node_id), "--address", ADDR, "--name", "Theirs")
        moved = await reads.version(local)
        assert moved != version
        peers, _ = await reads.people(local, moved, now)
        assert set(peers) == {ours.node_id, theirs.node_id}
        assert await reads.introductions(local, moved, now) == []
    finally:
        await local.close()
