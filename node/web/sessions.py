"""Sign-in links and sessions of the web app, in memory only (nothing is written to disk).

A link from `canopy ui` is a random token that works once, within `UI_LINK_TTL_S`; using it
opens a session: a random id (the cookie) and its own CSRF token. Sessions end when unused
for `UI_SESSION_IDLE_S`, `UI_SESSION_MAX_S` after sign-in, at sign-out, or when the node
stops. Time comes in as an argument (monotonic seconds), so tests need no clock tricks.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from protocol import limits


def _key(token: str) -> bytes:
    # Kept by digest: a token is compared only through a dict lookup of its hash, so the
    # lookup's timing says nothing about the token itself.
    return hashlib.blake2b(token.encode("utf-8", "replace"), digest_size=32).digest()


@dataclass(slots=True)
class Session:
    csrf: str
    signed_in: float
    last_used: float
    lang: str = ""  # chosen with the switcher; empty: from Accept-Language
    user: str = ""  # the staff user signed in; empty: the operator, by a `canopy ui` link
    role: str = "admin"  # what the user may do (node/web/roles.py)
    flash: str = ""  # what the last action did, shown once on the next page

    def csrf_ok(self, supplied: str) -> bool:
        return hmac.compare_digest(supplied.encode(), self.csrf.encode())


class Sessions:
    """The pending sign-in links and the open sessions of one running node."""

    def __init__(self) -> None:
        self._links: OrderedDict[bytes, float] = OrderedDict()  # digest -> expires at
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()  # least recent first

    def issue_link(self, now: float) -> str:
        token = secrets.token_urlsafe(32)
        self._links[_key(token)] = now + limits.UI_LINK_TTL_S
        while len(self._links) > limits.UI_MAX_LINKS:
            self._links.popitem(last=False)
        return token

    def redeem(self, token: str, now: float) -> tuple[str, Session] | None:
        """A new session for a link not yet used and not expired; None otherwise. The link
        is spent either way."""
        expires = self._links.pop(_key(token), None)
        if expires is None or expires <= now:
            return None
        return self.open(now)

    def open(self, now: float, user: str = "", role: str = "admin") -> tuple[str, Session]:
        """A new session (for a staff user who signed in, or the operator's link)."""
        sid = secrets.token_urlsafe(32)
        session = Session(
            csrf=secrets.token_urlsafe(32), signed_in=now, last_used=now, user=user, role=role
        )
        self._sessions[_key(sid)] = session
        while len(self._sessions) > limits.UI_MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sid, session

    def get(self, sid: str, now: float) -> Session | None:
        """The open session with this id (its use noted), or None once it is over."""
        key = _key(sid)
        session = self._sessions.get(key)
        if session is None:
            return None
        if (
            now - session.last_used > limits.UI_SESSION_IDLE_S
            or now - session.signed_in > limits.UI_SESSION_MAX_S
        ):
            del self._sessions[key]
            return None
        session.last_used = now
        self._sessions.move_to_end(key)
        return session

    def end_user(self, user: str) -> int:
        """End every session of this staff user at once (removed); how many there were."""
        keys = [k for k, s in self._sessions.items() if user and s.user == user]
        for key in keys:
            del self._sessions[key]
        return len(keys)

    def end(self, sid: str) -> None:
        self._sessions.pop(_key(sid), None)

    def __len__(self) -> int:
        return len(self._sessions)
