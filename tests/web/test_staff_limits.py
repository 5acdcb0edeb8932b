"""Brute-force limits of staff sign-in (node/web/throttle.py), with time as an argument:
the lockout after `UI_SIGNIN_FAILURES`, how it grows, that it lifts, and the per-address
rate of link tries. (tests/web/test_staff.py shows a lockout on a real node.)"""

from __future__ import annotations

from node.web.throttle import Throttle
from protocol import limits


def test_lockout_grows_and_lifts() -> None:
    throttle = Throttle()
    keys = ("name:x", "addr:1.2.3.4")
    for _ in range(limits.UI_SIGNIN_FAILURES):
        assert throttle.locked(keys, 0.0) == 0
        throttle.failed(keys, 0.0)
    assert throttle.locked(keys, 0.0) == limits.UI_LOCKOUT_BASE_S
    later = limits.UI_LOCKOUT_BASE_S + 1.0
    assert throttle.locked(keys, later) == 0  # it lifts
    throttle.failed(keys, later)  # one more failure: twice as long
    assert throttle.locked(keys, later) == 2 * limits.UI_LOCKOUT_BASE_S
    throttle.succeeded("name:x")
    assert throttle.locked(("name:x",), later) == 0
    for _ in range(40):
        throttle.failed(keys, later)
    assert throttle.locked(keys, later) == limits.UI_LOCKOUT_MAX_S


def test_link_tries_are_rate_limited_per_address() -> None:
    throttle = Throttle()
    for _ in range(limits.UI_LINK_ATTEMPTS_PER_MIN):
        assert throttle.link_try("a", 0.0)
    assert not throttle.link_try("a", 1.0)
    assert throttle.link_try("b", 1.0)
    assert throttle.link_try("a", 61.0)
