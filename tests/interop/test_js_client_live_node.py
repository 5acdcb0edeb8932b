"""An independent SHS1/box-stream client talks to a LIVE `canopy run` node.

tests/interop/js_node_client.js (node.js: `ws` for the WebSocket, shs1-crypto for SHS1,
pull-box-stream for box-stream, a hand-written msgpack decoder; no Canopy code) dials a
real node over loopback:

- trusted with `canopy trust`, it completes the handshake, decrypts the node's first
  box-stream bytes and reads the node's Hello (its name, protocol version 1);
- untrusted, it gets msg2 but no msg4, and the node counts `handshake_refused` in
  /v1/status, exactly as it refuses our own client.

The npm packages are installed (pinned) into .cache/npm, the prefix the other interop tests
use. No node/npm on PATH: skipped. npm present but the install or the client fails: fails.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nacl.utils
import pytest
from test_shs1_interop import (  # type: ignore[import-not-found, unused-ignore]
    PINNED as SHARED_PINS,
)
from test_shs1_interop import (  # type: ignore[import-not-found, unused-ignore]
    npm_env,
)

from node.demo import NodeProcess, wait_until
from protocol.identity import Identity
from protocol.invite import Invite

pytestmark = pytest.mark.timeout(90)

CLIENT = Path(__file__).resolve().parent / "js_node_client.js"
PINNED = {**SHARED_PINS, "ws": "8.18.3"}
NODE_NAME = "Mwangaza Legal Aid (Kisumu)"
CLIENT_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def js_env() -> dict[str, str]:
    env = npm_env(PINNED, "the independent JS client")
    for name in ("CANOPY_NETWORK_KEY", "CANOPY_CLIENT_SECRET", "CANOPY_JS_CLIENT_TIMEOUT_MS"):
        env.pop(name, None)
    return env


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[NodeProcess, Invite]]:
    node = NodeProcess(tmp_path, "live", NODE_NAME)
    await node.init()
    await node.start()
    try:
        _, code, _ = await node.cli("invite", "--address", node.address)
        invite = Invite.from_code(code.strip())
        assert str(invite.node_id) == node.node_id
        yield node, invite
    finally:
        await node.stop()


async def status(node: NodeProcess) -> dict[str, Any]:
    """GET /v1/status from the node's local API, found through DATA/node.json."""
    runtime = json.loads((node.data / "node.json").read_text())
    headers = {"Authorization": f"Bearer {runtime['token']}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(runtime["api"] + "/v1/status", headers=headers) as response,
    ):
        response.raise_for_status()
        result: dict[str, Any] = await response.json()
        return result


async def run_client(
    env: dict[str, str], node: NodeProcess, invite: Invite, identity: Identity
) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(CLIENT),
        node.address,
        invite.node_id.raw.hex(),
        env={
            **env,
            "CANOPY_NETWORK_KEY": invite.network_key.hex(),
            "CANOPY_CLIENT_SECRET": identity.secret_key.hex(),
            "CANOPY_JS_CLIENT_TIMEOUT_MS": str(int(CLIENT_TIMEOUT * 1000) - 2000),
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLIENT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("the JS client hung past its own timeout")
    lines = out.decode().strip().splitlines()
    assert lines, f"JS client printed nothing (exit {proc.returncode}); stderr:\n{err.decode()}"
    result: dict[str, Any] = json.loads(lines[-1])
    return proc.returncode or 0, result, err.decode()


async def test_trusted_js_client_completes_handshake_and_reads_hello(
    js_env: dict[str, str], live: tuple[NodeProcess, Invite]
) -> None:
    node, invite = live
    identity = Identity.generate(nacl.utils.random)
    await node.cli("trust", str(identity.node_id), "--name", "js-client")

    async def trusted() -> bool:
        return int((await status(node))["peers"]) == 1

    await wait_until("the node to load the new trust", trusted, timeout=10)

    code, result, stderr = await run_client(js_env, node, invite, identity)
    assert code == 0, (result, stderr, node.log_path.read_text()[-2000:])
    assert result["handshake"] == "ok"
    assert result["hello"]["version"] == 1
    assert result["hello"]["name"] == NODE_NAME
    live_status = await status(node)
    assert result["hello"]["addresses"] == live_status["advertise"]
    assert "handshake_refused" not in live_status["rejected"]


async def test_untrusted_js_client_is_refused_without_msg4(
    js_env: dict[str, str], live: tuple[NodeProcess, Invite]
) -> None:
    node, invite = live
    stranger = Identity.generate(nacl.utils.random)
    before = int((await status(node))["rejected"].get("handshake_refused", 0))

    code, result, _ = await run_client(js_env, node, invite, stranger)
    assert code == 1, result
    assert result["handshake"] == "failed"
    # The network key was right (msg2 came back and verified); only msg4 was withheld.
    assert result["stage"] == "msg4", result
    assert result["error"].startswith("no msg4"), result

    async def refused() -> bool:
        count = (await status(node))["rejected"].get("handshake_refused", 0)
        return int(count) == before + 1

    await wait_until("the node to count handshake_refused", refused, timeout=5)
    assert (await status(node))["connected"] == 0
