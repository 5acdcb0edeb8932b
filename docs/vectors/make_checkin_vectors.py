"""Regenerate docs/vectors/checkin.json: the content of each check-in op, a duress mark
(ok and duress, one slot per responder) and the state the fold gives.

Deterministic: randomness is the SeededRandom of docs/spec/10-identity-records.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_vectors import SeededRandom, write_or_check  # (puts the repo root on sys.path)

from protocol import checkin
from protocol.checkin import CheckIn, Op
from protocol.encoding import pack
from protocol.identity import Identity

OUT = Path(__file__).with_name("checkin.json")
DEFENDER_SEED = bytes(range(64, 96))
RESPONDER_SEEDS = (bytes(range(96, 128)), bytes(range(128, 160)))
T0 = 1_800_000_000_000
HOUR = 3_600_000


def cases() -> dict[str, object]:
    defender = Identity(DEFENDER_SEED)
    responders = [Identity(s) for s in RESPONDER_SEEDS]
    random = SeededRandom(b"checkin-vectors")
    d, plan_id, circle = defender.node_id.raw, bytes(range(16)), bytes(range(16, 32))
    keys = [r.node_id.x25519() for r in responders]
    ok = checkin.make_mark(keys, False, random)
    duress = checkin.make_mark(keys, True, random)
    round_ = T0 + 13 * HOUR
    contents = [
        CheckIn(
            plan_id,
            Op.PLAN,
            d,
            0,
            circle=circle,
            every=12 * HOUR,
            grace=2 * HOUR,
            next_due=T0 + 12 * HOUR,
            confirmations=2,
            escalate="network",
            message="Amina missed a check-in",
        ),
        CheckIn(plan_id, Op.CHECKIN, d, 1, next_due=T0 + 13 * HOUR, mark=ok),
        CheckIn(plan_id, Op.CHECKIN, d, 2, next_due=round_, mark=duress),
        CheckIn(plan_id, Op.PAUSE, d, 3, next_due=T0 + 72 * HOUR),
        CheckIn(plan_id, Op.RESUME, d, 4, next_due=round_),
        CheckIn(plan_id, Op.REACHED, d, 0, round=round_),
        CheckIn(plan_id, Op.UNREACHABLE, d, 1, round=round_),
        CheckIn(plan_id, Op.ESCALATED, d, 2, round=round_),
    ]
    items = [(bytes([n]) * 32, d, T0 + n, c) for n, c in enumerate(contents[:5])]
    items += [(b"\x80" * 32, responders[0].node_id.raw, T0 + 9, contents[6])]
    items += [(b"\x81" * 32, responders[1].node_id.raw, T0 + 9, contents[6])]
    state = checkin.fold(items)
    assert state is not None
    return {
        "defender_seed": DEFENDER_SEED.hex(),
        "responder_seeds": [s.hex() for s in RESPONDER_SEEDS],
        "contents": [{"op": c.op.value, "content": pack(c.to_content()).hex()} for c in contents],
        "marks": {"ok": ok.hex(), "duress": duress.hex()},
        "fold": {
            "records": "contents 0-4 by the defender (record id n*32, created T0+n), then"
            " contents[6] (unreachable) by each responder",
            "next_due": state.next_due,
            "paused": state.paused,
            "unreachable": len(state.unreachable),
            "status_at_round_plus_grace": state.status(round_ + 2 * HOUR),
        },
    }


def main() -> int:
    return write_or_check(OUT, cases())


if __name__ == "__main__":
    raise SystemExit(main())
