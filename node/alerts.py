"""Alerts (and notices, such as a missed check-in) as the running node shows them: the
recent ones (`/v1/alerts`) and those who watch (`/v1/watch`, `canopy watch`). An alert
that opens but breaks its schema is never buffered nor shown; the caller counts it.
Never logs content.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from node.peer_book import PeerBook
from protocol import limits
from protocol.content import Alert
from protocol.envelope import open_record
from protocol.errors import NotForUs, RemoteProtocolError
from protocol.identity import Identity
from protocol.record import Record

Entry = dict[str, object]


class Alerts:
    def __init__(self, identity: Identity, book: PeerBook) -> None:
        self.identity = identity
        self.book = book
        self.recent: deque[Entry] = deque(maxlen=limits.RECENT_ALERTS)
        self._watchers: set[asyncio.Queue[Entry]] = set()

    def announce(self, record: Record, now: int) -> RemoteProtocolError | None:
        """Buffer an alert and hand it to every watcher; the error if it breaks the alert
        schema (then it is neither buffered nor shown)."""
        entry: Entry = {
            "id": record.id.hex(),
            "author": str(record.author),
            "created": record.created,
            "received_at_ms": now,
        }
        try:
            body = open_record(
                record, self.identity, self.book.network_key, circle_keys=self.book.circle_keys
            )
            alert = Alert.from_content(body.content)  # open_record checked it; typed here
            entry["text"] = alert.text
            entry["urgency"] = alert.urgency
            peer = self.book.peers.get(record.author)
            entry["from"] = (
                "you"
                if record.author == self.identity.node_id
                else (peer.label if peer else record.author.short)
            )
            entry["readable"] = True
        except NotForUs:
            entry["readable"] = False
        except RemoteProtocolError as exc:
            return exc
        self.notice(entry)
        return None

    def notice(self, entry: Entry) -> None:
        """Buffer a notice (an alert, or a missed check-in the node raises) and hand it to
        every watcher."""
        self.recent.append(entry)
        for queue in list(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(entry)

    def watch(self) -> asyncio.Queue[Entry]:
        """A queue of the alerts from now on; an empty entry means the node stops."""
        queue: asyncio.Queue[Entry] = asyncio.Queue(256)
        self._watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[Entry]) -> None:
        self._watchers.discard(queue)

    def stop(self) -> None:
        for queue in self._watchers:
            queue.put_nowait({})
