"""Panic wipe: destroy the key file (secret key and storage key) so the data directory
becomes unreadable, then end a running node, all in well under a second.

The store stays on disk, but every row in it is sealed with the storage key that lived
only in the key file (docs/THREAT-MODEL.md, "Border search"). Never asks for the
passphrase: whoever wipes is in a hurry.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nacl.utils

from node.local import KEY_FILE, RUNTIME_FILE
from protocol.errors import CanopyError

STOP_WAIT_S = 0.4  # how long a running node gets to leave by itself before SIGKILL


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


def _stop_node(path: Path) -> bool:
    try:
        runtime = json.loads((path / RUNTIME_FILE).read_text())
        pid = int(runtime["pid"])
        api, token = str(runtime["api"]), str(runtime["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if pid == os.getpid() or not _alive(pid):
        return False
    request = urllib.request.Request(
        api + "/v1/wipe", method="POST", data=b"", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=STOP_WAIT_S):
            pass
    except (urllib.error.URLError, OSError, ValueError):
        pass
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.01)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)  # the keys are in its memory: it must not linger
    return True


def wipe(path: Path) -> WipeReport:
    """Destroy the keys first (that alone makes the directory unreadable), then the node."""
    start = time.perf_counter()
    key_path = path / KEY_FILE
    destroyed = _destroy(key_path)
    _destroy(key_path.with_suffix(".tmp"))
    stopped = _stop_node(path)
    (path / RUNTIME_FILE).unlink(missing_ok=True)
    if not destroyed and not stopped:
        raise CanopyError(f"no Canopy key in {path}: nothing to wipe")
    return WipeReport(time.perf_counter() - start, stopped)
