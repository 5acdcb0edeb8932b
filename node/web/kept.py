"""What the home page reads of the store on every view (peers and revoked keys, the
checklists due, introduction requests), kept between views while the store is unchanged.

Each value is tagged with the store's version (`Store.version`: SQLite's data_version for
what `canopy` writes from another process, this connection's change count for what the node
writes) read before the value was, and is given again only while the version is the same
and no record it was made from has expired: what a view shows is what a fresh read would
show. One round trip a view instead of a dozen. Holds values in memory only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from node.checklists import State
    from node.local import Local, Peer
    from protocol.identity import NodeId

T = TypeVar("T")
Version = tuple[int, int]


class StoreReads:
    """Values read from one store, by name, each with the version it was read at."""

    def __init__(self) -> None:
        self._held: dict[
            str, tuple[Version, int | None, Any]
        ] = {}  # name -> (version, until, value)

    async def version(self, local: Local) -> Version:
        """The store's version now: read it first, then `get` what the view shows."""
        return await local.store.version()

    async def get(
        self,
        name: str,
        version: Version,
        now_ms: int,
        make: Callable[[], Awaitable[tuple[T, int | None]]],
    ) -> T:
        """The value `make` gives (value, the ms it holds until; None: no expiry ends it),
        made again once the version differs from the one it was made at or its time is up."""
        held = self._held.get(name)
        if held is not None and held[0] == version and (held[1] is None or now_ms < held[1]):
            value: T = held[2]
            return value
        value, until = await make()
        self._held[name] = (version, until, value)
        return value

    async def people(
        self, local: Local, version: Version, now_ms: int
    ) -> tuple[Mapping[NodeId, Peer], Collection[NodeId]]:
        """The stored peers and the revoked keys (what `peer_rows` reads of the store)."""
        from node.revocation import revoked_ids

        async def make() -> tuple[tuple[Mapping[NodeId, Peer], Collection[NodeId]], None]:
            return (await local.peers(), frozenset(await revoked_ids(local))), None

        return await self.get("people", version, now_ms, make)

    async def checklists(self, local: Local, version: Version, now_ms: int) -> list[State]:
        """Every readable checklist, newest version per lesson (`node.checklists.states`),
        until the first of them expires (an older version may show from then on)."""
        from node.checklists import states

        async def make() -> tuple[list[State], int | None]:
            found, _ = await states(local, now_ms)
            return found, min((s.item.record.expires for s in found), default=None)

        return await self.get("checklists", version, now_ms, make)

    async def introductions(
        self, local: Local, version: Version, now_ms: int
    ) -> list[dict[str, object]]:
        from node.introductions import introductions

        async def make() -> tuple[list[dict[str, object]], None]:
            return await introductions(local), None

        return await self.get("introductions", version, now_ms, make)
