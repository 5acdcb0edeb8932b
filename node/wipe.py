"""Panic wipe: destroy the key file (secret key and storage key) so the data directory
becomes unreadable, then end a running node (found through its lock, DATA/node.lock),
all in well under a second; if that node cannot be ended, say so and fail.

The store stays on disk, but every row in it is sealed with the storage key that lived
only in the key file (docs/THREAT-MODEL.md, "Border search"). Never asks for the
passphrase: whoever wipes is in a hurry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nacl.utils

from node.local import KEY_FILE, LOCK_FILE, RUNTIME_FILE, Local, lock_holder, lock_is_held
from protocol import limits
from protocol.errors import CanopyError, WipeIncomplete


@dataclass(frozen=True, slots=True)
class WipeReport:
    seconds: float
    stopped_node: bool


def _destroy(path: Path) -> bool:
    """Overwrite `path` in place with random bytes, flush it to the disk, then unlink it."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        os.write(fd, nacl.utils.random(max(size, 1)))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _ask_to_exit(path: Path, pid: int | None) -> None:
    """POST /v1/wipe to the node that node.json names (when it is the lock holder)."""
    try:
        runtime = json.loads((path / RUNTIME_FILE).read_text())
        written_by = int(runtime["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if written_by == os.getpid() or (pid is not None and written_by != pid):
        return
    from node.local_api import call

    with contextlib.suppress(CanopyError):  # it is ended all the same, by SIGKILL
        call(path, "POST", "/v1/wipe", timeout=limits.WIPE_STOP_WAIT_S)


def _stop_node(path: Path) -> bool:
    """End the node running on `path`, found through its lock (node.json may be gone):
    ask it through the API, SIGKILL the lock holder if it lingers, and check that the lock
    was released. Returns whether a node was running; WipeIncomplete if it still is."""
    if not lock_is_held(path):
        return False
    pid = lock_holder(path)
    if pid is None:  # it took the lock this instant and is writing its pid
        _wait(
            lambda: lock_holder(path) is not None or not lock_is_held(path), limits.WIPE_STOP_WAIT_S
        )
        pid = lock_holder(path)
    _ask_to_exit(path, pid)
    released = _wait(lambda: not lock_is_held(path), limits.WIPE_STOP_WAIT_S)
    if not released and pid is not None and pid != os.getpid():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)  # the keys are in its memory: it must not linger
        released = _wait(lambda: not lock_is_held(path), limits.WIPE_KILL_WAIT_S)
    if not released:
        who = f"pid {pid}" if pid is not None else "its pid is unknown"
        raise WipeIncomplete(
            f"keys destroyed on disk, but the node running on {path} ({who}) could not be "
            "stopped and still holds the keys in memory: end it now (kill -9, or power off)"
        )
    return True


def destroy_keys(path: Path) -> bool:
    """Destroy the key file (and a half-written one): after this the data directory is
    unreadable. Returns whether there was a key file."""
    key_path = path / KEY_FILE
    destroyed = _destroy(key_path)
    _destroy(key_path.with_suffix(".tmp"))
    return destroyed


def leave_now(local: Local) -> None:
    """End this running node moments from now (so the answer that says so can go out),
    unclean on purpose: no flush, no goodbye, the keys in its memory go with the process."""
    local.clear_runtime()
    asyncio.get_running_loop().call_later(0.05, os._exit, 75)


def wipe(path: Path) -> WipeReport:
    """Destroy the keys first (that alone makes the directory unreadable), then the node."""
    start = time.perf_counter()
    destroyed = destroy_keys(path)
    stopped = _stop_node(path)  # raises WipeIncomplete, loudly, if it is still running
    (path / RUNTIME_FILE).unlink(missing_ok=True)  # the stopped node's, if it left one
    if stopped:
        (path / LOCK_FILE).unlink(missing_ok=True)
    if not destroyed and not stopped:
        raise CanopyError(f"no Canopy key in {path}: nothing to wipe")
    return WipeReport(time.perf_counter() - start, stopped)
