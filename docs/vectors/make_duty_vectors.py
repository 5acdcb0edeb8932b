"""Regenerate docs/vectors/duty.json: a circle's `duty` records (two shifts, a clear, an
off-duty mark and the owner's response target) sealed to its epoch key, and the duty state
and loudness every member must fold from them.

Deterministic: randomness is the SeededRandom of docs/spec/10-identity-records.md. Run from
the repo root:
    python docs/vectors/make_duty_vectors.py            # rewrite duty.json
    python docs/vectors/make_duty_vectors.py --check    # fail if it is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from protocol import oncall  # noqa: E402
from protocol.encoding import pack  # noqa: E402
from protocol.envelope import seal_record  # noqa: E402
from protocol.identity import Identity  # noqa: E402
from protocol.oncall import DutyRecord, Op  # noqa: E402
from protocol.record import Kind, Record, Scope  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from make_vectors import SeededRandom  # noqa: E402  (the one of docs/spec/10-...)

OUT = Path(__file__).with_name("duty.json")
SEEDS = {"owner": bytes(range(32)), "b": bytes(range(32, 64)), "c": bytes(range(64, 96))}
CIRCLE_KEY = bytes(range(96, 128))
CIRCLE_ID = bytes(range(16))
T0 = 1_800_000_000_000
HOUR = 3_600_000
DAY = 86_400_000


def cases() -> dict[str, object]:
    ids = {name: Identity(seed) for name, seed in SEEDS.items()}
    raw = {name: i.node_id.raw for name, i in ids.items()}
    random = SeededRandom(b"duty-vectors")

    def sealed(who: str, content: DutyRecord) -> Record:
        return seal_record(
            ids[who],
            Kind.DUTY,
            content.to_content(),
            created=T0,
            expires=T0 + DAY,
            scope=Scope.NETWORK,
            recipients=[],
            network_key=None,
            random=random,
            circle_keys=[CIRCLE_KEY],
        )

    def shift(slot: int, member: str) -> DutyRecord:
        """An eight-hour shift from T0 for `member`, in slot `slot` (repeated 16 times)."""
        return DutyRecord(
            CIRCLE_ID,
            Op.SHIFT,
            0,
            slot=bytes([slot]) * 16,
            member=raw[member],
            start=T0,
            end=T0 + 8 * HOUR,
        )

    plan = [
        ("owner", shift(1, "b")),
        ("b", shift(2, "c")),
        ("c", DutyRecord(CIRCLE_ID, Op.CLEAR, 0, slots=(bytes([2]) * 16,))),
        ("c", DutyRecord(CIRCLE_ID, Op.AWAY, 1, until=T0 + DAY)),
        ("owner", DutyRecord(CIRCLE_ID, Op.TARGET, 1, target_ms=HOUR)),
    ]
    records = [(who, rec, sealed(who, rec)) for who, rec in plan]
    members = frozenset(raw.values())
    duty = oncall.fold(
        CIRCLE_ID, raw["owner"], members, [(r.id, raw[w], rec) for w, rec, r in records]
    )
    names = {v: k for k, v in raw.items()}
    at = T0 + HOUR
    return {
        "seeds": {name: seed.hex() for name, seed in SEEDS.items()},
        "circle_key": CIRCLE_KEY.hex(),
        "circle": CIRCLE_ID.hex(),
        "records": [
            {"by": w, "content": pack(rec.to_content()).hex(), "record": r.to_bytes().hex()}
            for w, rec, r in records
        ],
        "state": {
            "at": at,
            "shifts": [s.slot.hex() for s in duty.shifts],
            "on_call": sorted(names[m] for m in duty.on_call(at)),
            "away": {names[m]: until for m, until in duty.away.items()},
            "target_ms": duty.target_ms,
            "loudness": {n: oncall.loudness(duty, raw[n], at).value for n in sorted(raw)},
            "needed_of_2": oncall.needed(2, [raw["b"], raw["c"]], duty.away_now(at)),
        },
    }


def main() -> int:
    text = json.dumps(cases(), indent=1) + "\n"
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            print(f"{OUT} is stale: run python {Path(__file__).relative_to(ROOT)}")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
