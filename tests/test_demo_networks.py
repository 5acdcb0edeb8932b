"""`canopy demo --networks` runs its story to the end on real processes: two networks
linked by A, a guide per audience reaching exactly its readers, the peers circle growing
to C, a circle spanning both networks losing C, and no guide text on any disk."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

pytestmark = pytest.mark.timeout(240)


async def test_the_networks_demo_runs_to_its_end_with_nothing_readable_on_disk(
    demo: Callable[[str], Awaitable[str]],
) -> None:
    text = await demo("--networks")
    assert "this invite adds network 'Uganda shelters'" in text
    assert "C never received the Kenya-only guide" in text and "no record" in text
    assert "Our intake hours and referral form" in text.split("C reads:")[1].splitlines()[0]
    assert "none found" in text and '"ok": true' in text
