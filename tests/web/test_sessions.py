"""Sign-in links and sessions (node/web/sessions.py): time is an argument, so expiry is
tested exactly, without waiting five minutes."""

from __future__ import annotations

from node.web.sessions import Sessions
from protocol import limits


def test_a_link_works_once() -> None:
    sessions = Sessions()
    token = sessions.issue_link(now=100.0)
    opened = sessions.redeem(token, now=101.0)
    assert opened is not None
    assert sessions.redeem(token, now=101.0) is None


def test_an_expired_link_is_refused_and_spent() -> None:
    sessions = Sessions()
    token = sessions.issue_link(now=0.0)
    assert sessions.redeem(token, now=limits.UI_LINK_TTL_S + 0.001) is None
    assert sessions.redeem(token, now=1.0) is None  # refused once, gone for good


def test_a_link_just_within_its_lifetime_works() -> None:
    sessions = Sessions()
    token = sessions.issue_link(now=0.0)
    assert sessions.redeem(token, now=limits.UI_LINK_TTL_S - 0.001) is not None


def test_an_unknown_token_opens_nothing() -> None:
    sessions = Sessions()
    sessions.issue_link(now=0.0)
    assert sessions.redeem("not-the-token", now=1.0) is None
    assert len(sessions) == 0


def test_sessions_end_when_idle_and_after_their_maximum() -> None:
    sessions = Sessions()
    opened = sessions.redeem(sessions.issue_link(0.0), 0.0)
    assert opened is not None
    sid, _ = opened
    assert sessions.get(sid, limits.UI_SESSION_IDLE_S - 1) is not None  # use renews it
    assert sessions.get(sid, 2 * limits.UI_SESSION_IDLE_S - 2) is not None
    assert sessions.get(sid, 3 * limits.UI_SESSION_IDLE_S) is None  # idle too long
    again = sessions.redeem(sessions.issue_link(0.0), 0.0)
    assert again is not None
    now = 0.0
    while now < limits.UI_SESSION_MAX_S - 60:  # used all day long ...
        now += limits.UI_SESSION_IDLE_S / 2
        sessions.get(again[0], now)
    assert sessions.get(again[0], limits.UI_SESSION_MAX_S + 1) is None  # ... still ends


def test_sign_out_ends_the_session_and_tokens_differ() -> None:
    sessions = Sessions()
    first = sessions.redeem(sessions.issue_link(0.0), 0.0)
    second = sessions.redeem(sessions.issue_link(0.0), 0.0)
    assert first is not None and second is not None
    assert first[0] != second[0] and first[1].csrf != second[1].csrf
    assert not first[1].csrf_ok(second[1].csrf) and first[1].csrf_ok(first[1].csrf)
    sessions.end(first[0])
    assert sessions.get(first[0], 1.0) is None
    assert sessions.get(second[0], 1.0) is not None


def test_memory_is_bounded() -> None:
    sessions = Sessions()
    tokens = [sessions.issue_link(0.0) for _ in range(limits.UI_MAX_LINKS + 5)]
    assert sessions.redeem(tokens[0], 1.0) is None  # the oldest links were dropped
    assert sessions.redeem(tokens[-1], 1.0) is not None
    for _ in range(limits.UI_MAX_SESSIONS + 5):
        sessions.redeem(sessions.issue_link(0.0), 0.0)
    assert len(sessions) == limits.UI_MAX_SESSIONS
