"""What the two live indexes (contacts and vouches in node/contact_index.py and
node/queries.py, guides in node/guide_index.py and node/library.py) share: editing a posting
list, removals kept while the index is being built (`PendingRemovals`), and writing the
openings queued since the last flush to the store's opened-record cache
(node/store_opened.py)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:  # the indexes stay importable without the store's I/O modules
    from node.store import Store

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V", bound=Hashable)
_T = TypeVar("_T")


def post(index: dict[_K, set[_V]], key: _K, rid: _V) -> None:
    """Add rid (a record id, or a slot) to index[key]."""
    ids = index.get(key)
    if ids is None:
        index[key] = {rid}
    else:
        ids.add(rid)


def discard(index: dict[_K, set[_V]], key: _K, rid: _V) -> bool:
    """Remove rid (a record id, or a slot) from index[key]; True if the key is gone."""
    ids = index.get(key)
    if ids is None:
        return False
    ids.discard(rid)
    if not ids:
        del index[key]
        return True
    return False


class _Index(Protocol):
    def remove(self, ids: Iterable[bytes]) -> int: ...

    def expired(self, now_ms: int) -> list[bytes]: ...


_I = TypeVar("_I", bound=_Index)


class PendingRemovals(Generic[_I]):
    """`remove` and `expire` of a live index that is rebuilt in the background: while a
    build runs (`_pending` is a list), removals are kept and applied to the new index when
    it is done (which drops what expired then itself), and to the index in place too when
    it answers meanwhile (a rebuild after a key change), so a withdrawal shows at once."""

    index: _I
    _pending: list[Any] | None

    def remove(self, ids: Sequence[bytes]) -> None:
        if self._pending is not None:
            self._pending.append(list(ids))
            if not self._serving_during_build():
                return
        self.index.remove(ids)  # also from an old index that answers while a new one builds

    def _serving_during_build(self) -> bool:
        """Whether the index in place answers queries while a new one is built."""
        return False

    def expire(self, now_ms: int) -> None:
        if self._pending is None:
            self.index.remove(self.index.expired(now_ms))


async def flush_openings(
    store: Store, queue: dict[bytes, tuple[_T, int]], pack: Callable[[_T, int], bytes]
) -> None:
    """Write what was opened of each queued record, (item, size of its wire bytes) by id,
    packed by `pack(item, room)` into the room its row has. Items leave the queue only once
    written, and only if not queued again meanwhile: a flush cancelled by the node stopping
    leaves them to the flush in `Node.stop`."""
    if not queue:
        return
    batch = list(queue.items())
    await store.put_opened([(rid, pack(it, store.opened_room(n)), n) for rid, (it, n) in batch])
    for rid, queued in batch:
        if queue.get(rid) is queued:
            del queue[rid]
