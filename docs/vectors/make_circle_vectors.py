"""Regenerate docs/vectors/circle.json: a circle's membership records and a payload sealed
to a circle's epoch key.

Deterministic: randomness is the SeededRandom of docs/spec/10-identity-records.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_vectors import SeededRandom, write_or_check  # (puts the repo root on sys.path)

from protocol import circle
from protocol.circle import History
from protocol.encoding import pack
from protocol.envelope import seal
from protocol.identity import Identity

OUT = Path(__file__).with_name("circle.json")
OWNER_SEED = bytes(range(32))
MEMBER_SEED = bytes(range(32, 64))


def cases() -> dict[str, object]:
    owner, member = Identity(OWNER_SEED), Identity(MEMBER_SEED)
    random = SeededRandom(b"circle-vectors")
    made = circle.create(owner.node_id, "Shelters", History.ALL, random)
    state = circle.fold([(b"\x00" * 32, owner.node_id.raw, made)])
    assert state is not None
    added = circle.add(state, owner.node_id, [member.node_id], random)
    state = circle.fold(
        [(b"\x00" * 32, owner.node_id.raw, made), (b"\x01" * 32, owner.node_id.raw, added)]
    )
    assert state is not None
    removed = circle.remove(state, owner.node_id, [member.node_id], random)
    plaintext = b"sealed to the circle's epoch 0 key"
    sealed = seal(plaintext, [], None, random, [state.key])
    return {
        "owner_seed": OWNER_SEED.hex(),
        "member_seed": MEMBER_SEED.hex(),
        "changes": [
            {"op": c.op.value, "circle_id": c.circle.hex(), "content": pack(c.to_content()).hex()}
            for c in (made, added, removed)
        ],
        "sealed_to_circle": {
            "epoch_key": state.key.hex(),
            "plaintext": plaintext.hex(),
            "sealed": sealed.hex(),
        },
    }


def main() -> int:
    return write_or_check(OUT, cases())


if __name__ == "__main__":
    raise SystemExit(main())
