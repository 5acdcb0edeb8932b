"""`canopy ui` without a running node: one line on stderr, nothing on stdout, non-zero exit.
(With a node, its first stdout line is the sign-in URL: tests/web/test_guards.py uses it.)"""

from __future__ import annotations

from tests.conftest import Net


async def test_ui_without_a_running_node_says_so_in_one_line(net: Net) -> None:
    node = await net.node("a")
    code, out, err = await node.cli("ui", check=False)
    assert code != 0
    assert out == ""
    assert err.strip().splitlines() == [
        f"canopy: no node is running on {node.data}; start it with: canopy run"
    ]
