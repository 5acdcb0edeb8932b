"""`canopy demo --networks` runs its story to the end on real processes: two networks
linked by A, a guide per audience reaching exactly its readers, the peers circle growing
to C, a circle spanning both networks losing C, and no guide text on any disk."""

from __future__ import annotations

import asyncio
import sys

import pytest

pytestmark = pytest.mark.timeout(240)


async def test_the_networks_demo_runs_to_its_end_with_nothing_readable_on_disk() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "demo",
        "--networks",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "this invite adds network 'Uganda shelters'" in text
    assert "C never received the Kenya-only guide" in text and "no record" in text
    assert "Our intake hours and referral form" in text.split("C reads:")[1].splitlines()[0]
    assert "none found" in text and '"ok": true' in text
