"""Regenerate docs/vectors/network.json: network tags and default names from network
keys, and a network-scoped record of version 2 carrying its network's tag.

Deterministic: randomness is the SeededRandom of docs/spec/10-identity-records.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_vectors import SeededRandom, write_or_check  # (puts the repo root on sys.path)

from protocol.envelope import seal_record
from protocol.identity import Identity
from protocol.networks import default_network_name, network_tag
from protocol.record import Kind, Scope

OUT = Path(__file__).with_name("network.json")
AUTHOR_SEED = bytes(range(32))
KEYS = [bytes(32), bytes(range(32)), bytes([0xFF]) * 32]
CREATED = 1_800_000_000_000


def cases() -> dict[str, object]:
    author = Identity(AUTHOR_SEED)
    random = SeededRandom(b"network-vectors")
    key = KEYS[1]
    record = seal_record(
        author,
        Kind.GUIDE,
        {
            "title": "Tagged",
            "lang": "en",
            "topics": [],
            "region": "",
            "format": "text/markdown",
            "filename": "t.md",
            "text": "# Tagged\n",
        },
        created=CREATED,
        expires=CREATED + 86_400_000,
        scope=Scope.NETWORK,
        recipients=[],
        network_key=key,
        random=random,
        network=network_tag(key),
    )
    return {
        "tags": [
            {
                "network_key": k.hex(),
                "tag": network_tag(k).hex(),
                "name": default_network_name(network_tag(k)),
            }
            for k in KEYS
        ],
        "tagged_record": {
            "author_seed": AUTHOR_SEED.hex(),
            "network_key": key.hex(),
            "record": record.to_bytes().hex(),
            "id": record.id.hex(),
            "signed_bytes": record.signed_bytes().hex(),
        },
    }


def main() -> int:
    return write_or_check(OUT, cases())


if __name__ == "__main__":
    raise SystemExit(main())
