"""Notices the running node raises by itself (a missed check-in, its escalation, a duress
check-in, a new help request), how loudly, and their keeping across a restart.

How loudly (protocol/oncall.py `loudness`, docs/spec/94-duty.md): a member on call for the
notice's circle gets it at urgency `high`, marked `on_call` and its text starting
"ON CALL:"; when nobody is on call every member gets it at `high`; when someone else is on
call, at `normal` (kept and listed, not loud); an off-duty member's node keeps it at `low`
and marked `away`. Every node raises it at the same moment: nobody waits for the on-call
member's node, which may be the one that was seized.

Each notice raised is a row of the sealed `notices` table (its id, then the entry), so a
restart neither raises it again nor forgets it: `load` puts the kept ones back where
`/v1/alerts`, the web app's home and the stream read them. The newest `MAX_NOTICES_KEPT`
are kept. Never logs content.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from node import oncall
from node.alerts import Alerts, Entry
from node.clock import now_ms
from node.local import Local
from node.peer_book import PeerBook
from protocol import help as rules
from protocol import limits
from protocol.encoding import Value
from protocol.envelope import open_record
from protocol.errors import NotForUs, RemoteProtocolError
from protocol.oncall import URGENCY, Duty, Loudness, loudness
from protocol.record import Kind, Record

TABLE = "notices"
log = logging.getLogger("canopy.notices")


class Notices:
    def __init__(
        self,
        local: Local,
        alerts: Alerts,
        book: PeerBook,
        own_write: Callable[[], None] = lambda: None,
    ) -> None:
        self.local = local
        self._own_write = own_write  # we wrote a sealed row: no need to reload trust for it
        self.alerts = alerts
        self.book = book
        self.kept: dict[str, Entry] = {}  # notice id -> entry, raised here (kept on disk)
        self.duties: dict[bytes, Duty] = {}  # the circles this node is in, by id
        self._pending: dict[str, Entry] = {}
        self._dirty = asyncio.Event()

    @property
    def me(self) -> bytes:
        return self.local.node_id.raw

    async def load(self) -> None:
        """The notices raised before this start, back into the recent alerts (oldest first)."""
        rows = await self.local.store.rows(TABLE)
        entries = sorted(
            ((key.decode("utf-8", "replace"), dict[str, object](v)) for key, v in rows.items()),
            key=lambda kv: (int(str(kv[1].get("received_at_ms", 0))), kv[0]),
        )
        for key, entry in entries:
            self.kept[key] = entry
            self.alerts.recent.append(entry)
        await self.reload_duties()

    async def reload_duties(self) -> None:
        """Fold the duty records again (as the node starts, and when duty or circle
        records arrive): who is on call and who is off duty."""
        self.duties = await oncall.duties(self.local, now_ms())

    def loudness(self, circle: bytes | None, now: int) -> Loudness:
        duty = self.duties.get(circle) if circle is not None else None
        return loudness(duty, self.me, now)

    def away(self, circle: bytes, now: int) -> frozenset[bytes]:
        duty = self.duties.get(circle)
        return duty.away_now(now) if duty is not None else frozenset()

    def raised(self, notice_id: str) -> bool:
        return notice_id in self.kept

    def raise_(self, entry: Entry, circle: bytes | None, now: int) -> bool:
        """Raise a notice once (by its id) at the loudness this node has for `circle`, and
        keep it; False if it was raised before (here, or before a restart)."""
        notice_id = str(entry["id"])
        if notice_id in self.kept:
            return False
        how = self.loudness(circle, now)
        entry = {**entry, "urgency": URGENCY[how], "loudness": how.value}
        entry["on_call"] = how is Loudness.ON_CALL
        entry["away"] = how is Loudness.AWAY
        if how is Loudness.ON_CALL:
            entry["text"] = f"ON CALL: {entry['text']}"
        self.kept[notice_id] = entry
        self._pending[notice_id] = entry
        self._dirty.set()
        self.alerts.notice(entry)
        return True

    async def flush(self) -> None:
        """Write the notices raised since the last flush (and drop the oldest beyond the
        bound); sealed rows, like every table."""
        pending, self._pending = self._pending, {}
        for notice_id, entry in pending.items():
            value: dict[str, Value] = {k: v for k, v in entry.items() if _plain(v)}  # type: ignore[misc]
            await self.local.store.put_row(TABLE, notice_id.encode(), value)
            self._own_write()
        if len(self.kept) > limits.MAX_NOTICES_KEPT:
            order = sorted(
                self.kept, key=lambda k: (int(str(self.kept[k].get("received_at_ms", 0))), k)
            )
            for notice_id in order[: len(self.kept) - limits.MAX_NOTICES_KEPT]:
                del self.kept[notice_id]
                await self.local.store.delete_row(TABLE, notice_id.encode())
                self._own_write()

    async def loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.flush()
            except Exception:  # a full disk must not stop the node raising notices
                log.exception("could not keep notices")

    # -- help requests ----------------------------------------------------------------------

    def help_arrived(self, records: Sequence[Record], now: int) -> None:
        """New help requests (not steps, not ours) this node can read: raise each once."""
        for record in records:
            if record.kind is not Kind.HELP or record.author.raw == self.me:
                continue
            notice_id = f"help-{record.id.hex()}"
            if notice_id in self.kept or record.expires <= now:
                continue
            try:
                body = open_record(
                    record,
                    self.local.identity,
                    self.book.network_key,
                    circle_keys=self.book.circle_keys,
                )
                content = rules.from_content(body.content)
            except (NotForUs, RemoteProtocolError):
                continue  # not ours to read, or malformed (the caller penalises)
            if not isinstance(content, rules.Request):
                continue
            if content.circle is not None and content.circle not in self.duties:
                continue  # a circle we are not in (any more)
            peer = self.book.peers.get(record.author)
            who = peer.label if peer else record.author.short
            self.raise_(
                {
                    "id": notice_id,
                    "kind": "help_request",
                    "author": str(record.author),
                    "request": record.id.hex(),
                    "created": record.created,
                    "received_at_ms": now,
                    "text": f"HELP REQUEST ({content.need}, {content.region}) from {who}:"
                    f" {content.text}  (canopy help ack {record.id.hex()[:12]})",
                    "from": who,
                    "readable": True,
                },
                content.circle,
                now,
            )

    # -- counts (status, metrics) -------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Notices kept here, by kind (counts only)."""
        out: dict[str, int] = {}
        for entry in self.kept.values():
            kind = str(entry.get("kind", "alert"))
            out[kind] = out.get(kind, 0) + 1
        return out


def _plain(value: object) -> bool:
    return isinstance(value, (str, int, bool)) or value is None


async def response_counts(local: Local, plans: dict[str, int], now: int) -> dict[str, int]:
    """What `status` and `/metrics` show of rapid response: counts only, never text, names
    or ids. `plans` are the watched plans by state (CheckinWatch.counts)."""
    from node.help_requests import states

    found = [f.state for f in (await states(local, now)).values() if f.state.open]
    me = local.node_id.raw
    duties = (await oncall.duties(local, now)).values()
    return {
        "help_open": len(found),
        "help_overdue": sum(1 for s in found if s.overdue(now)),
        "checkins_watched": sum(plans.values()),
        "checkins_missed": plans.get("missed", 0),
        "checkins_escalated": plans.get("escalated", 0),
        "on_call_circles": sum(1 for d in duties if me in d.on_call(now)),
        "away": int(any(d.is_away(me, now) for d in duties)),
    }
