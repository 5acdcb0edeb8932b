"""The running node's watch over check-in plans: it keeps the records of every plan it can
read, folds each plan when one arrives, and sleeps until the earliest due + grace; then it
raises what `protocol.checkin.due_events` says, once each, where alerts go (`canopy watch`,
the local API stream, the web app's home). I/O only: the rule is in protocol/checkin.py.
Never logs content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from node.alerts import Alerts
from node.checkins import PlanKey, duress_of, escalate, fold_in, member_sets, open_items
from node.clock import now_ms
from node.local import Local
from node.notices import Notices
from node.peer_book import PeerBook
from protocol import checkin, limits, oncall
from protocol.checkin import Event, Item, PlanState
from protocol.errors import RemoteProtocolError
from protocol.identity import NodeId
from protocol.record import Kind, Record

log = logging.getLogger("canopy.checkins")

_TEXT = {
    "missed": "MISSED CHECK-IN: {who} was due {due} and has not checked in; try to reach"
    " them, then record `canopy checkin reached {ref}` or `canopy checkin unreachable {ref}`",
    "escalated": "ESCALATED: {who} could not be reached by {k} members; the plan's"
    " escalation message was sent",
    "duress": "DURESS: {who}'s check-in at {at} says they are under duress; act on your"
    " safety protocol, and do not let it show",
}


def _at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class CheckinWatch:
    def __init__(self, local: Local, alerts: Alerts, book: PeerBook, notices: Notices) -> None:
        self.local = local
        self.alerts = alerts
        self.book = book
        self.notices = notices  # raised once each, kept across a restart, as loud as duty says
        self.items: dict[PlanKey, dict[bytes, Item]] = {}
        self.states: dict[PlanKey, PlanState] = {}
        self.duress: dict[PlanKey, bool] = {}
        self.members: dict[bytes, frozenset[bytes]] = {}  # circles we are in, by id
        self._wake = asyncio.Event()
        self._checked = now_ms()  # the last `check`: an away ending after it refolds
        self._escalating: set[PlanKey] = set()  # escalations owed by us, being published

    @property
    def me(self) -> bytes:
        return self.local.node_id.raw

    async def start(self) -> None:
        """Read every check-in record held (as the node starts, and when circles change)."""
        self.members = await member_sets(self.local)
        self.items.clear()
        self.states.clear()
        datas = await self.local.store.records_of_kind(str(Kind.CHECKIN))
        self.saw([Record.from_bytes(d) for d in datas])

    def saw(self, records: Sequence[Record]) -> list[tuple[Record, RemoteProtocolError]]:
        """Records stored (from a peer, or written here): fold the plans they are about.
        Returns those that opened but break the schema (never folded; the author pays)."""
        mine = [r for r in records if r.kind is Kind.CHECKIN]
        malformed: list[tuple[Record, RemoteProtocolError]] = []
        if not mine:
            return malformed
        opened = open_items(
            mine,
            self.local.identity,
            self.book.network_key,
            self.book.circle_keys,
            now_ms(),
            malformed,
        )
        for key, items in opened.items():
            held = self.items.setdefault(key, {})
            held.update({item[0]: item for item in items})
            self._fold(key)
        self._wake.set()
        return malformed

    def _fold(self, key: PlanKey) -> None:
        away = {cid: self.notices.away(cid, now_ms()) for cid in self.members}
        state = fold_in(list(self.items.get(key, {}).values()), self.members, away)
        if state is None:
            self.states.pop(key, None)
            return
        self.states[key] = state
        self.duress[key] = duress_of(state, self.local.identity)

    def duty_changed(self) -> None:
        """Who is off duty changed (a duty record, or an away ending): fold every plan again,
        since the escalation waits for no more reports than those on duty can give."""
        for key in list(self.items):
            self._fold(key)
        self._wake.set()

    def _watched(self) -> list[tuple[PlanKey, PlanState]]:
        return [(k, s) for k, s in self.states.items() if k[0] != self.me]

    def _raise(self, event: Event, state: PlanState, now: int) -> None:
        notice_id = f"checkin-{event.kind}-{event.plan.hex()}-{event.at}"
        if self.notices.raised(notice_id):
            return
        node = NodeId(event.defender)
        peer = self.book.peers.get(node)
        who = peer.label if peer else node.short
        text = _TEXT[event.kind].format(
            who=who,
            due=_at(state.next_due),
            ref=node.short,
            k=state.needed or state.confirmations,
            at=_at(event.at),
        )
        self.notices.raise_(
            {
                "id": notice_id,
                "kind": f"checkin_{event.kind}",
                "author": str(node),
                "defender": str(node),
                "plan": event.plan.hex(),
                "created": event.at,
                "received_at_ms": now,
                "text": text,
                "from": who,
                "readable": True,
            },
            state.circle,
            now,
        )
        log.warning("check-in %s: plan of %s", event.kind, node.short)

    def check(self, now: int) -> int | None:
        """Raise every due event; when to look again (None: only a new record changes it)."""
        since, self._checked = self._checked, now
        duties = self.notices.duties.values()
        if oncall.away_ended(duties, since, now):  # back on duty by the clock, no record
            for key in list(self.items):
                self._fold(key)
        wake = oncall.next_away_end(duties, now) if self.items else None
        for key, state in self._watched():
            for event in checkin.due_events(state, now, self.duress.get(key, False)):
                self._raise(event, state, now)
            at = checkin.next_wake(state, now)
            if at is not None and (wake is None or at < wake):
                wake = at
        return wake

    async def loop(self) -> None:
        while True:
            self._wake.clear()
            wake = self.check(now_ms())
            owed = await self.escalate_owed(now_ms())
            wake = owed if wake is None or (owed is not None and owed < wake) else wake
            timeout = None if wake is None else max(0.0, (wake + 1 - now_ms()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def escalate_owed(self, now: int) -> int | None:
        """A plan that escalated without a K-th report (a member went off duty after the
        reports were in, so fewer now suffice) and that nobody has escalated yet: of its
        "unreachable" reporters the one with the smallest id publishes the escalation, so
        exactly one node sends it (docs/spec/90-rapid-response.md). Only once the last
        report is OWED_ESCALATION_GRACE_MS old: the K-th reporter escalates as it reports,
        and its record may come a little after its report. Returns when to look again."""
        wake: int | None = None
        for key, state in self._watched():
            owed = checkin.needs_escalation(state) and state.unreachable
            if not owed or min(state.unreachable) != self.me or key in self._escalating:
                continue
            last = max(
                (i[2] for i in self.items[key].values() if i[3].op is checkin.Op.UNREACHABLE),
                default=0,
            )
            if now < last + limits.OWED_ESCALATION_GRACE_MS:
                at = last + limits.OWED_ESCALATION_GRACE_MS
                wake = at if wake is None else min(wake, at)
                continue
            self._escalating.add(key)
            try:
                folded, _ = await escalate(self.local, state, list(self.items[key].values()), now)
                self.states[key] = folded
                log.warning("check-in escalated by us: plan of %s", NodeId(state.defender).short)
            except Exception:  # never let one plan stop the watch; tried again next wake
                log.exception("publishing an owed escalation failed")
            finally:
                self._escalating.discard(key)
        return wake

    def counts(self, others_only: bool = False) -> dict[str, int]:
        """Plans held here by state (counts only: `status`, `metrics`); `others_only`: those
        this node watches, not its own."""
        now = now_ms()
        out: dict[str, int] = {}
        for _, state in self._watched() if others_only else self.states.items():
            status = state.status(now)
            out[status] = out.get(status, 0) + 1
        return out
