"""One node per data directory, with real `canopy run` processes on 127.0.0.1.

A second run on the same directory must fail at once and leave the running node's node.json
alone; `wipe` must find a running node through the lock even when node.json is gone, and
fail loudly when it cannot end it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node.demo import NodeProcess, free_port
from node.local import KEY_FILE, LOCK_FILE, RUNTIME_FILE, lock_holder, lock_is_held
from tests.conftest import Net

pytestmark = pytest.mark.timeout(120)


async def second_run(node: NodeProcess, port: int) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "--data",
        str(node.data),
        "run",
        "--listen",
        f"127.0.0.1:{port}",
        env=node.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 60)
    if b"running" in first:  # it started beside the first node
        proc.kill()
        await proc.wait()
        return 0, "a second node ran on the same data directory"
    err = await asyncio.wait_for(proc.stderr.read(), 60)
    return await proc.wait(), err.decode()


async def test_second_run_on_the_same_data_directory_fails_and_leaves_the_first_alone(
    net: Net,
) -> None:
    a = await net.node("A")
    await a.start()
    assert a.proc is not None
    runtime = (a.data / RUNTIME_FILE).read_bytes()
    for port in (free_port(), a.port):  # beside it on another port; on its own port
        code, err = await second_run(a, port)
        assert code == 1
        lines = err.strip().splitlines()
        assert lines == [
            f"canopy: a Canopy node (pid {a.proc.pid}) is already running on "
            f"{a.data}; stop it first"
        ]
        assert (a.data / RUNTIME_FILE).read_bytes() == runtime  # still the first node's
        assert (await a.api("/v1/status"))["id"] == a.node_id
    assert lock_holder(a.data) == a.proc.pid
    # The first node still stops cleanly, removes its own node.json and frees the lock.
    await a.stop()
    assert not (a.data / RUNTIME_FILE).exists()
    assert not lock_is_held(a.data)
    await a.start()  # and the directory can be run again
    assert (await a.api("/v1/status"))["id"] == a.node_id


async def test_wipe_finds_and_stops_the_running_node_through_its_lock(net: Net) -> None:
    a = await net.node("A")
    await a.start()
    assert a.proc is not None
    (a.data / RUNTIME_FILE).unlink()  # what a second run's exit used to do
    code, out, err = await a.cli("wipe", "--yes", check=False)
    assert code == 0, err
    assert "running node was stopped" in out
    assert await asyncio.wait_for(a.proc.wait(), 5) == -signal.SIGKILL
    assert not lock_is_held(a.data)
    assert not (a.data / KEY_FILE).exists()
    a.proc = None


async def test_wipe_says_loudly_when_it_cannot_stop_the_node(tmp_path: Path, net: Net) -> None:
    a = await net.node("A")
    # A holder whose lock outlives the pid it wrote: a child forked after taking the lock
    # keeps it when the parent (the pid in node.lock) is killed.
    holder = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from node.local import RunLock
        lock = RunLock.acquire(Path({str(a.data)!r}))
        child = os.fork()
        if child == 0:
            time.sleep(120)
            os._exit(0)
        print(child, flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    try:
        assert lock_holder(a.data) == proc.pid
        code, out, err = await a.cli("wipe", "--yes", check=False)
        assert code == 1 and out == ""
        (line,) = err.strip().splitlines()
        assert "keys destroyed on disk, but the node running on" in line
        assert "could not be stopped" in line and f"pid {proc.pid}" in line
        assert not (a.data / KEY_FILE).exists()  # the keys went first all the same
        assert lock_is_held(a.data) and (a.data / LOCK_FILE).exists()
    finally:
        os.kill(child, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def test_restore_refuses_a_directory_a_node_runs_on_even_without_node_json(
    net: Net,
) -> None:
    a = await net.node("A")
    backup = a.data.parent / "a.backup"
    await a.cli("backup", "--out", str(backup))
    await a.start()
    (a.data / RUNTIME_FILE).unlink()  # what a second run's exit used to do
    key, db = (a.data / KEY_FILE).read_bytes(), (a.data / "canopy.db").stat().st_ino
    code, out, err = await a.cli("restore", str(backup), "--force", check=False)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        f"canopy: a node is running on {a.data}; stop it before restoring"
    ]
    assert (a.data / KEY_FILE).read_bytes() == key  # nothing of the running node replaced
    assert (a.data / "canopy.db").stat().st_ino == db
    assert a.proc is not None and a.proc.returncode is None  # and it still runs
    await a.stop()
    code, out, err = await a.cli("restore", str(backup), "--force", check=False)
    assert code == 0 and "restored" in out, err  # stopped, it restores as before
