"""Regenerate docs/vectors/help.json: a help request sealed to a circle's epoch key, its
steps (two concurrent claims among them), an alert acknowledgement, and the folded state
every node must reach from them.

Deterministic: randomness is the SeededRandom of docs/spec/10-identity-records.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_vectors import SeededRandom, write_or_check  # (puts the repo root on sys.path)

from protocol import help as rules
from protocol.encoding import Value, pack
from protocol.envelope import seal_record
from protocol.help import AlertAck, Event, Op, Request, Step
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope

OUT = Path(__file__).with_name("help.json")
SEEDS = {"requester": bytes(range(32)), "b": bytes(range(32, 64)), "c": bytes(range(64, 96))}
CIRCLE_KEY = bytes(range(96, 128))
CIRCLE_ID = bytes(range(16))
T0 = 1_800_000_000_000
DAY = 86_400_000


def cases() -> dict[str, object]:
    ids = {name: Identity(seed) for name, seed in SEEDS.items()}
    random = SeededRandom(b"help-vectors")

    def sealed(who: str, content: dict[str, Value], at: int) -> Record:
        return seal_record(
            ids[who],
            Kind.HELP,
            content,
            created=at,
            expires=at + DAY,
            scope=Scope.NETWORK,
            recipients=[],
            network_key=None,
            random=random,
            circle_keys=[CIRCLE_KEY],
        )

    request = Request("legal", "KE", "Detained at the border post", 7_200_000, CIRCLE_ID)
    first = sealed("requester", request.to_content(), T0)
    rid = first.id
    plan = [
        ("b", Step(Op.ACK, rid), T0 + 60_000),
        ("b", Step(Op.CLAIM, rid), T0 + 120_000),
        ("c", Step(Op.CLAIM, rid), T0 + 120_000),  # concurrent: the record id decides
        ("requester", Step(Op.RESOLVE, rid, outcome="Released on bail"), T0 + 900_000),
    ]
    steps = [(who, step, sealed(who, step.to_content(), at)) for who, step, at in plan]
    state = rules.fold(
        rid,
        ids["requester"].node_id.raw,
        T0,
        request,
        [Event(r.id, ids[w].node_id.raw, r.created, s) for w, s, r in steps],
    )
    names = {ids[n].node_id.raw: n for n in ids}
    ack = seal_record(
        ids["b"],
        Kind.ACK,
        AlertAck(bytes(32)).to_content(),
        created=T0,
        expires=T0 + DAY,
        scope=Scope.NETWORK,
        recipients=[ids["requester"].node_id],
        network_key=None,
        random=random,
    )
    return {
        "seeds": {name: seed.hex() for name, seed in SEEDS.items()},
        "circle_key": CIRCLE_KEY.hex(),
        "request": {"content": pack(request.to_content()).hex(), "record": first.to_bytes().hex()},
        "steps": [
            {"by": w, "content": pack(s.to_content()).hex(), "record": r.to_bytes().hex()}
            for w, s, r in steps
        ],
        "state": {
            "holder": names[state.holder] if state.holder else None,
            "claims": [names[m] for m, _ in state.claims],
            "late": [names[e.event.author] for e in state.history if e.late],
            "acks": [names[m] for m, _ in state.acks],
            "resolved": state.resolved[2] if state.resolved else None,
            "first_response": state.first_response,
        },
        "alert_ack": {
            "content": pack(AlertAck(bytes(32)).to_content()).hex(),
            "record": ack.to_bytes().hex(),
        },
    }


def main() -> int:
    return write_or_check(OUT, cases())


if __name__ == "__main__":
    raise SystemExit(main())
