"""The panic wipe in the web app does what `canopy wipe --yes` does, in-process: the key file
is destroyed first (the data directory becomes unreadable), then the node process ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from node.demo import NodeProcess
from node.local import KEY_FILE
from tests.web.conftest import Nodes, open_app

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def doomed(nodes: Nodes) -> AsyncIterator[NodeProcess]:
    node = await nodes.node("doomed", "Seized Org")
    await node.start()
    yield node


async def test_web_panic_wipe_destroys_the_key_file_and_ends_the_node(
    browser: Any, doomed: NodeProcess
) -> None:
    key = doomed.data / KEY_FILE
    assert key.exists()
    proc = doomed.proc
    assert proc is not None and proc.returncode is None
    app = await open_app(browser, doomed)
    await app.goto("/wipe")
    await app.page.fill("#confirm", "WIPE")
    await app.page.click("button.danger")
    await app.page.wait_for_load_state()
    assert "wipe" in (await app.page.content()).lower()

    # the unclean exit of a wipe, the same as through POST /v1/wipe
    assert await asyncio.wait_for(proc.wait(), 10) == 75
    assert not key.exists() and not key.with_suffix(".tmp").exists()
    code, _, err = await doomed.cli("status", check=False)
    assert code != 0 and "Traceback" not in err  # unreadable now, said in one line
    await app.page.context.close()
