"""Shared fixtures: `net`, a set of real `canopy run` nodes in a temporary directory, all
of them stopped when the test ends (whatever happened)."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
