"""protocol.rounds and what a responder's reconciler announces (docs/spec/35-reconcile.md,
"What a round announces"; docs/spec/60-revocation-and-defences.md, "Rounds")."""

from __future__ import annotations

import hashlib

import pytest

from protocol import limits
from protocol.errors import QuotaExceeded, RateLimited
from protocol.reconcile import Reconciler
from protocol.rounds import RoundLedger, check_round_gap


def rid(n: int) -> bytes:
    return hashlib.blake2b(n.to_bytes(4, "big"), digest_size=32).digest()


def run(
    initiator: list[tuple[int, bytes]], responder: Reconciler
) -> tuple[Reconciler, RoundLedger]:
    init = Reconciler(initiator)
    ledger = RoundLedger(0.0)
    message: bytes | None = init.initiate()
    while message is not None:
        reply = responder.reconcile(message)
        ledger.announce(*responder.take_announced())
        assert reply is not None
        message = init.reconcile(reply)
    return init, ledger


@pytest.mark.parametrize("common", [0, 5, 300, 3000])
def test_everything_the_initiator_learns_it_may_send_is_announced(common: int) -> None:
    shared = [(1000 + 10 * i, rid(i)) for i in range(common)]
    extra = [(1005 + 10 * i, rid(100_000 + i)) for i in range(0, max(common, 40), 7)]
    theirs = [(5 + i, rid(200_000 + i)) for i in range(3)]  # only the responder has these
    responder = Reconciler(shared + theirs)
    init, ledger = run(shared + extra, responder)
    assert sorted(init.have) == sorted(i for _, i in extra)
    for created, i in extra:
        assert ledger.announced(i, created)


def test_records_outside_what_was_announced_are_not() -> None:
    shared = [(1000 + 10 * i, rid(i)) for i in range(500)]
    new = [(3005, rid(900_000))]
    responder = Reconciler(shared)
    _, ledger = run(shared + new, responder)
    assert ledger.announced(rid(900_000), 3005)
    # Before everything both sides agreed on, or with no readable timestamp: a push.
    assert not any(ledger.announced(rid(800_000 + i), 10 + i) for i in range(500))
    assert not ledger.announced(rid(800_000), None)


def test_a_fresh_reconciler_reuses_the_set_and_starts_idle() -> None:
    items = [(1000 + i, rid(i)) for i in range(100)]
    base = Reconciler(items)
    a, _ = run([*items, (5000, rid(7))], base.fresh())
    b, _ = run([*items, (5000, rid(7))], base.fresh())
    assert a.have == b.have == [rid(7)]


def test_a_round_is_bounded_in_records_bytes_and_time() -> None:
    ledger = RoundLedger(100.0)
    ledger.charge(limits.MAX_ROUND_RECORDS, 1000)
    with pytest.raises(QuotaExceeded):
        ledger.charge(1, 10)
    big = RoundLedger(100.0)
    with pytest.raises(QuotaExceeded):
        big.charge(1, limits.MAX_ROUND_BYTES + 1)
    assert not ledger.expired(100.0 + limits.MAX_ROUND_SECONDS)
    assert ledger.expired(100.0 + limits.MAX_ROUND_SECONDS + 0.001)


def test_rounds_opened_too_often_are_refused() -> None:
    check_round_gap(None, 5.0)
    check_round_gap(5.0, 5.0 + limits.MIN_ROUND_GAP_S)
    with pytest.raises(RateLimited):
        check_round_gap(5.0, 5.0 + limits.MIN_ROUND_GAP_S / 2)
    assert limits.MIN_ROUND_GAP_S < limits.MIN_ROUND_INTERVAL_S  # jitter never trips honest
