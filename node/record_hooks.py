"""What newly stored records mean to the running node's features beside sync: alerts
announced, check-in plans folded, help requests and acks checked (an accepted referral of
ours sent on), contacts and vouches indexed, guides indexed and checked once, circles'
keys read again when membership or trust moves (the peers circle following trust).

`runtime.Node` builds one `RecordHooks` and calls it for records received from a peer or
a bundle (`stored`) and for records `canopy` wrote (`written`); it keeps the wiring, the
pushes and the revocations. A record that opened but breaks its kind's schema costs its
author score (its author signed it; a relay may not have been able to read it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import KW_ONLY, dataclass, field

from node import circles, peers_circle
from node.alerts import Alerts
from node.checkin_watch import CheckinWatch
from node.clock import now_ms
from node.ingest import malformed_among
from node.library import Library
from node.local import Local
from node.notices import Notices
from node.peer_book import PeerBook
from node.queries import KnowWho
from node.readers import malformed as open_malformed
from protocol import limits
from protocol.errors import DecodeError
from protocol.identity import NodeId
from protocol.lifecycle import Withdrawal
from protocol.record import Kind, Record

# Read by no index as they arrive: opened once here so a malformed one costs its author.
_CHECKED_ON_ARRIVAL = (Kind.DUTY, Kind.HELP, Kind.ACK)


@dataclass(eq=False, repr=False)
class RecordHooks:
    local: Local
    book: PeerBook
    _: KW_ONLY
    alerts: Alerts
    checkins: CheckinWatch
    knowwho: KnowWho
    library: Library
    notices: Notices  # raised once each, kept across restarts, as loud as duty says
    network_keys: Callable[[], tuple[bytes, ...]]  # every network's, the first first
    ingesting: Callable[[], bool]  # sync is storing records: background checks wait
    notify: Callable[[], None]  # we wrote records: poll and push them now
    spawn: Callable[[Coroutine[object, object, None]], None]  # beside the node, until it stops
    # checklists stored, not yet opened once
    _unchecked_guides: deque[bytes] = field(default_factory=deque, init=False)
    _checking_guides: bool = field(default=False, init=False)
    # authors of malformed guides the library found, to charge
    _malformed_guides: list[NodeId] = field(default_factory=list, init=False)
    _charging: bool = field(default=False, init=False)
    # one pass over accepted referrals at a time
    _help_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self.library.malformed = self._guide_malformed  # it opens each stored guide: no 2nd open
        self.library.ingesting = self.ingesting  # it holds unreadables while a sync stores

    async def stored(
        self, fresh: Sequence[Record], purged: Sequence[bytes], now: int, *, from_peer: bool
    ) -> None:
        """Records from a peer (`from_peer`) or a bundle were stored (`fresh`) and others
        deleted by the tombstones among them (`purged`)."""
        if purged:
            self.knowwho.remove(purged)
            self.library.remove(purged)
        for record, error in self.checkins.saw(fresh):  # malformed: its author pays
            await self.book.penalise(record.author, error, reason="content_malformed")
        self.notices.help_arrived(fresh, now)  # new help requests: on call first and loudest
        for record in fresh:
            if record.kind is Kind.ALERT:
                malformed = self.alerts.announce(record, now)
                if malformed is not None:
                    await self.book.penalise(record.author, malformed, reason="content_malformed")
            elif record.kind in _CHECKED_ON_ARRIVAL and from_peer:
                bad = open_malformed(
                    record, self.local.identity, self.book.network_key, self.book.circle_keys
                )
                if bad is not None:
                    await self.book.penalise(record.author, bad, reason="content_malformed")
            elif record.kind in (Kind.CONTACT, Kind.VOUCH) and self.knowwho.add(
                record, verify_body=True
            ):  # opened, but malformed: its author pays, as for alerts
                error = DecodeError("content breaks its kind's schema")
                await self.book.penalise(record.author, error, reason="content_malformed")
            elif record.kind is Kind.GUIDE:
                self.library.add(record)
        guides = [
            r.id for r in fresh if r.kind is Kind.CHECKLIST and r.author != self.local.node_id
        ]
        if guides:
            self._unchecked_guides.extend(guides)
            if not self._checking_guides:
                self._checking_guides = True
                self.spawn(self._check_guides())
        if any(r.kind is Kind.HELP for r in fresh):  # an accepted referral of ours: send it
            self.spawn(self._help_arrived())

    async def written(self, records: Sequence[Record], now: int) -> None:
        """`canopy` wrote these records (our own: trusted, their bodies not checked again)."""
        circle = any(r.kind is Kind.CIRCLE for r in records)
        if circle:  # ours (the peers circle made for `--share peers`): read with its key
            await self.read_circle_keys()
        for record in records:
            if record.kind is Kind.ALERT:
                if self.alerts.announce(record, now) is not None:
                    self.book.count("content_malformed")
            elif record.kind in (Kind.CONTACT, Kind.VOUCH):
                self.knowwho.add(record, verify_body=False)
            elif record.kind is Kind.GUIDE:
                self.library.add(record)
            elif record.kind is Kind.TOMBSTONE:
                targets = Withdrawal.from_payload(record.payload).targets
                self.knowwho.remove(targets)
                self.library.remove(targets)
        if circle:
            await self.notices.reload_duties()
            await self.checkins.start()  # a circle we changed: whose plans we watch
        elif any(r.kind is Kind.DUTY for r in records):
            await self.duty_changed()
        self.checkins.saw(records)

    async def flush(self) -> None:
        """Write the openings the indexes cached since the last flush."""
        await self.knowwho.flush_opened()
        await self.library.flush_opened()
        await self.notices.flush()

    # -- circles ---------------------------------------------------------------------------

    async def read_circle_keys(self) -> None:
        """Read with the circles' keys we hold now."""
        self.book.circle_keys = await circles.read_keys(self.local)
        self.library.keys_changed()
        self.knowwho.keys_changed()

    async def trust_changed(self, now: int) -> None:
        """Trust was reloaded: the peers circle (`--to peers`) follows it."""
        if await peers_circle.follow(self.local, now):
            self.notify()
            await self.read_circle_keys()

    async def circles_changed(self, now: int) -> None:
        """A membership record or a revocation arrived: cut revoked keys out of our circles
        (a new epoch, pushed at once) and read with the keys we hold now."""
        if await circles.cut_off_revoked(self.local, now):
            self.notify()
        await self.read_circle_keys()
        await self.notices.reload_duties()
        await self.checkins.start()  # check-ins held before their circle's key came

    async def duty_changed(self) -> None:
        """A duty record (on call, off duty, a target): fold duties and plans again."""
        await self.notices.reload_duties()
        self.checkins.duty_changed()

    # -- work beside the node --------------------------------------------------------------

    async def _help_arrived(self) -> None:
        from node.help_requests import send_accepted_referrals

        async with self._help_lock:
            if await send_accepted_referrals(self.local, now_ms()):
                self.notify()  # our new contact copies: push them on

    def _guide_malformed(self, author: NodeId) -> None:
        """The library opened a stored guide of `author`'s (on arrival, or when the key that
        opens it came) and it breaks the guide schema: never shown; its author pays."""
        self._malformed_guides.append(author)
        if not self._charging:
            self._charging = True
            self.spawn(self._charge_malformed_guides())

    async def _charge_malformed_guides(self) -> None:
        error = DecodeError("guide breaks its kind's schema")
        try:
            while self._malformed_guides:
                authors, self._malformed_guides = self._malformed_guides, []
                for author in authors:
                    await self.book.penalise(author, error, reason="content_malformed")
        finally:
            self._charging = False

    async def _check_guides(self) -> None:
        """Open the checklists this node can read once, after they are stored (guides: the
        library opens each as it is stored and tells `_guide_malformed`): one that breaks its
        schema is never shown by any reader (open_record refuses it); here it is counted
        and its author, who signed it, pays for it. Never urgent, so it waits while
        records are being ingested rather than take the cores from them; it keeps ids, not
        records, so a large sync does not hold them in memory meanwhile."""
        loop = asyncio.get_running_loop()
        try:
            while self._unchecked_guides:
                if self.ingesting():
                    await asyncio.sleep(limits.GUIDE_CHECK_IDLE_S)
                    continue
                n = min(len(self._unchecked_guides), limits.GUIDE_CHECK_CHUNK)
                ids = [self._unchecked_guides.popleft() for _ in range(n)]
                datas = list((await self.local.store.get_records(ids)).values())
                identity, network_keys = self.local.identity, self.network_keys()
                bad = await loop.run_in_executor(
                    None, malformed_among, datas, identity, network_keys, self.book.circle_keys
                )
                for record, error in bad:
                    await self.book.penalise(record.author, error, reason="content_malformed")
        finally:
            self._checking_guides = False
