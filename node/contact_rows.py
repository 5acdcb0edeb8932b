"""The rows `canopy query` prints (and `--json` shows): one per search hit, with who wrote
and who vouches for it as this node names them. Built the same way offline
(`node.directory.local_query`) and by a running node (`node.queries.KnowWho`).

Presentation only: decides nothing about what matches or how it ranks.
"""

from __future__ import annotations

from collections.abc import Mapping

from node.contact_index import ContactIndex
from node.local import Peer
from node.ranking import Hit
from protocol.contact import Filter
from protocol.identity import NodeId


def labels_of(peers: Mapping[NodeId, Peer]) -> dict[bytes, str]:
    return {n.raw: p.label for n, p in peers.items()}


def result_rows(
    index: ContactIndex, flt: Filter, now_ms: int, peers: Mapping[NodeId, Peer], limit: int
) -> list[dict[str, object]]:
    """`index.search` for `flt`, ranked from our peers, as rows."""
    distances = index.distances(n.raw for n in peers)
    labels = labels_of(peers)
    hits = index.search(flt, now_ms, distances, limit)
    return [hit_row(h, index.me, labels, distances) for h in hits]


def hit_row(
    hit: Hit, me: bytes, labels: dict[bytes, str], distances: dict[bytes, int]
) -> dict[str, object]:
    """A result as the CLI prints it (and as --json shows it)."""
    e = hit.entry
    c = e.contact
    row: dict[str, object] = {
        "id": e.rid.hex(),
        "kind": c.kind,
        "region": c.region,
        "langs": list(c.langs),
        "specialties": list(c.specialties),
        "share": c.share.value,
        "author": str(NodeId(e.author)),
        "from": labels.get(e.author, NodeId(e.author).short) if e.author != me else "you",
        "vouchers": [
            {
                "id": str(NodeId(v)),
                "label": "you" if v == me else labels.get(v, NodeId(v).short),
                "distance": distances.get(v),
            }
            for v in hit.vouchers
        ],
        "distance": hit.distance,
        "score": round(hit.score, 2),
        "stale": hit.stale,
        "unverified": hit.unverified,
        "review": c.review,
        "created": e.created,
    }
    if c.teaser:
        row["teaser"] = True
        row["introducer"] = str(NodeId(c.introducer))
        row["name"] = ""
    else:
        row["teaser"] = False
        row["name"] = c.name
        row["channels"] = [f"{k}:{v}" for k, v in c.channels]
        if c.notes:
            row["notes"] = c.notes
    return row
