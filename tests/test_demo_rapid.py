"""`canopy demo --rapid-response` runs its story to the end on five real processes: a duress
check-in normal on the defender and flagged on the circle, the seized defender's missed
check-in raised by both responders, one "could not reach" not escalating and two doing so
to a third organisation through a relay that cannot read it, a help request's life cycle
with concurrent claims (the later claimant told), an acknowledged alert, and no plan
message or request text on any disk (the seized one included)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

pytestmark = pytest.mark.timeout(480)


async def test_the_rapid_response_demo_runs_to_its_end_with_nothing_readable_on_disk(
    demo: Callable[[str], Awaitable[str]],
) -> None:
    text = await demo("--rapid-response")
    assert "duress shown: False" in text
    assert "B's notice: DURESS:" in text
    assert "B raised it" in text and "C raised it" in text
    first, second = text.split("$ canopy checkin unreachable A")[1:3]
    assert "(1 of 2)" in first and "escalated" not in first
    assert "D holds 0 readable alerts" in first
    assert "(2 of 2)" in second and "escalated: alert" in second
    assert "D reads the escalation" in text and "it cannot read; R watches no plan: True" in text
    assert "(late: another claim holds it)" in text and "told: True" in text
    assert "accept-referral" in text and "resolved by" in text
    assert "1 acked, not yet:" in text
    assert "5 data directories" in text and "none found" in text
    assert text.rstrip().endswith('{"ok": true}')
