"""Who may do what in the web app: the one table of every state-changing route and the
least role that may use it, checked by the guard middleware (node/web/app.py) before any
handler runs, so a reader crafting a POST with a valid CSRF token still gets 403.

Readers read and search; editors also publish, add contacts, vouch, send alerts, check
in, report on a missed check-in, ask for help, take a request on, go off duty and
acknowledge alerts;
admins also manage peers, invites, users, distrust and the wipe. A POST route missing from
the table needs an admin (closed by default). The operator, signed in with `canopy ui`'s
one-time link on the node's own machine, is an admin.
"""

from __future__ import annotations

from node.web.staff import ROLES

READER, EDITOR, ADMIN = ROLES

# (method, the route's canonical path under /ui) -> least role.
NEEDS: dict[tuple[str, str], str] = {
    ("POST", "/ui/signout"): READER,
    ("POST", "/ui/lang"): READER,
    ("POST", "/ui/guides/preview"): READER,  # renders what was typed; stores nothing
    ("GET", "/ui/guides/new"): EDITOR,  # the editor's form: nothing a reader could send
    ("POST", "/ui/guides"): EDITOR,
    ("POST", "/ui/guides/{id}/withdraw"): EDITOR,
    ("POST", "/ui/alerts"): EDITOR,
    ("POST", "/ui/alerts/{id}/ack"): EDITOR,
    ("POST", "/ui/checkins"): EDITOR,
    ("POST", "/ui/checkins/{defender}/{outcome}"): EDITOR,
    ("POST", "/ui/help"): EDITOR,
    ("POST", "/ui/help/{id}/{op}"): EDITOR,
    ("POST", "/ui/away"): EDITOR,  # this node off duty in its circles, or back on duty
    ("POST", "/ui/knowwho/contacts"): EDITOR,
    ("POST", "/ui/knowwho/vouch"): EDITOR,
    ("POST", "/ui/knowwho/introduce"): EDITOR,
    ("POST", "/ui/knowwho/introductions/{id}"): EDITOR,
    ("POST", "/ui/peers/invite"): ADMIN,
    ("POST", "/ui/peers/accept"): ADMIN,
    ("POST", "/ui/peers/{id}/distrust"): ADMIN,
    ("GET", "/ui/wipe"): ADMIN,
    ("POST", "/ui/wipe"): ADMIN,
    ("GET", "/ui/staff"): ADMIN,
}


def needed(method: str, route: str) -> str:
    """The least role for this request: READER for reading, ADMIN for an unlisted POST."""
    default = READER if method in ("GET", "HEAD") else ADMIN
    return NEEDS.get((method, route), default)


def may(role: str, method: str, route: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed(method, route))
