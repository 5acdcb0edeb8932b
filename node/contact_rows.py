"""The rows `canopy query` prints (and `--json` shows): one per search hit, with who wrote
and who vouches for it as this node names them. Built the same way offline
(`node.directory.local_query`) and by a running node (`node.queries.KnowWho`).

Presentation only: decides nothing about what matches or how it ranks.
"""

from __future__ import annotations

import functools
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
    author, author_short = _id_texts(e.author)
    row: dict[str, object] = {
        "id": e.rid.hex(),
        "kind": c.kind,
        "region": c.region,
        "langs": list(c.langs),
        "specialties": list(c.specialties),
        "share": c.share.value,
        "author": author,
        "from": labels.get(e.author, author_short) if e.author != me else "you",
        "vouchers": [_voucher(v, me, labels, distances) for v in hit.vouchers],
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


def _voucher(
    v: bytes, me: bytes, labels: dict[bytes, str], distances: dict[bytes, int]
) -> dict[str, object]:
    text, short = _id_texts(v)
    label = "you" if v == me else labels.get(v, short)
    return {"id": text, "label": label, "distance": distances.get(v)}


@functools.lru_cache(maxsize=4096)  # a page lists the same few organisations again and again
def _id_texts(raw: bytes) -> tuple[str, str]:
    """A key's id as text and its short form (base32 of the key: no secret)."""
    text = str(NodeId(raw))
    return text, NodeId(raw).short
