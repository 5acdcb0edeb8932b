"""Listings of the guide index (`node.library`'s running copy, or one built for `canopy
guides` when no node runs): the filters from a query, and the rows `canopy guides --json`
prints."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from node.guide_index import GuideIndex, Wanted, lesson_row
from node.local import Peer
from node.trust import match_peers
from protocol import limits
from protocol.errors import CanopyError
from protocol.identity import NodeId


def author_keys(index: GuideIndex, peers: Mapping[NodeId, Peer], ref: str) -> frozenset[bytes]:
    """Authors `--from` may mean: a trusted peer (as `match_peers` finds them: a full id, an
    exact name, an id prefix), or any author in the index whose id starts with `ref` (4+
    characters). None found is an error that says so."""
    found = {p.node_id.raw for p in match_peers(list(peers.values()), ref)}
    low = ref.strip().lower()
    if len(low) >= 4:
        found |= {a for a in index.by_author if str(NodeId(a)).startswith(low)}
    if not found:
        raise CanopyError(f"--from {ref!r}: no trusted peer or author of a guide here by that")
    return frozenset(found)


def wanted_of(index: GuideIndex, peers: Mapping[NodeId, Peer], q: Mapping[str, str]) -> Wanted:
    """A listing's filters from the local API's query (or the command line's, as a map)."""
    for name in ("lang", "topic", "region", "from"):
        if len(q.get(name, "").encode()) > limits.MAX_GUIDE_FIELD_BYTES:
            raise CanopyError(f"--{name} is too long")
    if len(q.get("search", "").encode()) > limits.MAX_GUIDE_TITLE_BYTES:
        raise CanopyError("--search is too long")
    ref = q.get("from", "").strip()
    try:
        limit = int(q.get("limit", "0"))
    except ValueError:
        raise CanopyError("--limit must be a number") from None
    if not 0 <= limit <= limits.MAX_LOCAL_RESULTS:
        raise CanopyError(f"--limit must be between 1 and {limits.MAX_LOCAL_RESULTS}")
    return Wanted(
        lang=q.get("lang", "").strip(),
        topic=q.get("topic", "").strip(),
        region=q.get("region", "").strip(),
        authors=author_keys(index, peers, ref) if ref else None,
        search=q.get("search", ""),
        limit=limit,
    )


def listing(
    index: GuideIndex,
    wanted: Wanted,
    now_ms: int,
    prefer: Sequence[str],
    peers: Mapping[NodeId, Peer],
    me: NodeId,
    revoked: Collection[NodeId],
    skip: int = 0,
) -> dict[str, object]:
    """What `canopy guides --json` prints: one row per lesson (`node.guide_index.lesson_row`),
    the newest `wanted.limit` (0: all) and how many matched, and how many guides are held here but
    unreadable or malformed. `skip`: leave out that many of the newest (a page further on)."""
    names: dict[tuple[bytes, bool], str] = {}  # a few authors, thousands of rows

    def label(author: bytes, full: bool) -> str:
        name = names.get((author, full))
        if name is None:
            node_id = NodeId(author)
            peer = peers.get(node_id)
            if full:
                name = str(node_id)
            elif author == me.raw:
                name = "you"
            else:
                name = peer.label if peer else node_id.short
            names[(author, full)] = name
        return name

    bad = {n.raw for n in revoked}
    lessons, total = index.lessons(wanted, now_ms, prefer, wanted.limit)
    return {
        "guides": [lesson_row(c, versions, label, bad) for c, versions in lessons[skip:]],
        "lessons": total,
        "held_unreadable": index.unreadable,
        "held_malformed": index.malformed,
    }
