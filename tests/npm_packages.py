"""Pinned npm packages for tests, installed into .cache/npm (git-ignored) on first use: the
interop tests' independent JavaScript peers and the web tests' axe-core.

No node/npm on PATH: the test is skipped. npm present but the install fails: the test fails."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "npm"
MODULES = CACHE / "node_modules"


def npm_env(pins: dict[str, str], purpose: str) -> dict[str, str]:
    """Install `pins` into .cache/npm if they are missing; the environment to run node with.

    Skips only when node/npm are absent; a failed install fails the test."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip(f"npm/node not on PATH: cannot run {purpose}")

    def installed() -> bool:
        for name, version in pins.items():
            manifest = MODULES / name / "package.json"
            if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
                return False
        return True

    CACHE.mkdir(parents=True, exist_ok=True)
    # Test workers run in parallel (pytest-xdist): one installs while the others wait.
    with open(CACHE / ".install-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed():
            _install(npm, pins, installed)
    return dict(os.environ, NODE_PATH=str(MODULES))


def _install(npm: str, pins: dict[str, str], installed: Callable[[], bool]) -> None:
    cmd = [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund",
           "--ignore-scripts", *(f"{n}@{v}" for n, v in pins.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0 or not installed():
        pytest.fail(f"npm install failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
