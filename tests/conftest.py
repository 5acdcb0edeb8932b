"""Shared fixtures: `net`, a set of real `canopy run` nodes in a temporary directory, all
of them stopped when the test ends (whatever happened); `demo`, a `canopy demo` story run
to its end as a user runs it (killed if the test ends first)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from node.demo import NodeProcess


class Net:
    """Data directories (and, once started, processes) of the nodes of one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[NodeProcess] = []

    async def node(self, label: str, name: str | None = None, **env: str) -> NodeProcess:
        node = NodeProcess(self.root, label, name or f"Org {label}", env=env)
        await node.init()
        self.nodes.append(node)
        return node

    async def close(self) -> None:
        for node in self.nodes:
            await node.stop()


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    network = Net(tmp_path)
    try:
        yield network
    finally:
        await network.close()


@pytest.fixture
async def demo() -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """`demo(FLAG)`: the output of `canopy demo FLAG`, once it exited 0 (else the test fails
    with the ends of its output and errors)."""
    running: list[asyncio.subprocess.Process] = []

    async def run(flag: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            "demo",
            flag,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        running.append(proc)
        out, err = await proc.communicate()
        text = out.decode()
        assert proc.returncode == 0, err.decode()[-3000:] + text[-3000:]
        return text

    try:
        yield run
    finally:
        for proc in running:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
