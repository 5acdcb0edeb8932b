"""Range-based set reconciliation: two real Reconcilers joined by an in-memory exchange."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import errors, limits
from protocol.encoding import pack
from protocol.errors import DecodeError, LocalProtocolError, RemoteProtocolError, UnexpectedMessage
from protocol.reconcile import (
    INFINITY,
    MODE_FINGERPRINT,
    Bound,
    Item,
    Range,
    Reconciler,
    ReconcileState,
    decode_message,
    encode_message,
    encode_varint,
    fingerprint,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs/vectors/reconcile.json").read_text()
)


def run(
    a: list[Item],
    b: list[Item],
    max_bytes: int = limits.MAX_RECONCILE_MESSAGE_BYTES,
    branching: int = limits.RECONCILE_BRANCHING,
    idlist_threshold: int = limits.RECONCILE_IDLIST_THRESHOLD,
    initiator_idlist_threshold: int = limits.RECONCILE_INITIATOR_IDLIST_THRESHOLD,
) -> tuple[Reconciler, Reconciler, int, list[bytes]]:
    """Reconcile a (initiator) with b (responder); return both sides, bytes and messages."""
    init, resp = (
        Reconciler(
            items,
            max_message_bytes=max_bytes,
            branching=branching,
            idlist_threshold=idlist_threshold,
            initiator_idlist_threshold=initiator_idlist_threshold,
        )
        for items in (a, b)
    )
    sent: list[bytes] = []
    msg: bytes | None = init.initiate()
    while msg is not None:
        assert len(msg) <= max_bytes
        sent.append(msg)
        reply = resp.reconcile(msg)
        assert reply is not None and len(reply) <= max_bytes
        sent.append(reply)
        msg = init.reconcile(reply)
        assert len(sent) < 2000, "reconciliation does not terminate"
    assert init.done and resp.done
    assert init.rounds == resp.rounds == len(sent) // 2
    return init, resp, sum(map(len, sent)), sent


def assert_converged(a: list[Item], b: list[Item], init: Reconciler) -> None:
    ids_a = {i for _, i in a}
    ids_b = {i for _, i in b}
    assert set(init.have) == ids_a - ids_b
    assert set(init.need) == ids_b - ids_a
    assert len(init.have) == len(set(init.have))
    assert len(init.need) == len(set(init.need))


def random_items(rng: random.Random, n: int) -> list[Item]:
    lo, hi = 1_600_000_000_000, 1_700_000_000_000
    return [(rng.randrange(lo, hi), rng.randbytes(32)) for _ in range(n)]


# Items: few timestamps (many equal), ids that share long prefixes.
_prefixes = st.sampled_from([b"", b"\x00" * 31, b"\x00" * 20, b"\xab" * 30, b"\xff" * 31])


@st.composite
def item_ids(draw: st.DrawFn) -> bytes:
    prefix = draw(_prefixes)
    return prefix + draw(st.binary(min_size=32 - len(prefix), max_size=32 - len(prefix)))


items_st = st.lists(
    st.tuples(st.sampled_from([0, 1, 2, 1000, 2**63 - 1]) | st.integers(0, 2**40), item_ids()),
    max_size=120,
    unique_by=lambda it: it[1],
)


@st.composite
def two_sets(draw: st.DrawFn) -> tuple[list[Item], list[Item]]:
    shared = draw(items_st)
    only_a = draw(items_st)
    only_b = draw(items_st)
    seen = {i for _, i in shared}
    only_a = [it for it in only_a if it[1] not in seen]
    seen |= {i for _, i in only_a}
    only_b = [it for it in only_b if it[1] not in seen]
    return shared + only_a, shared + only_b


# Convergence.


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(two_sets(), st.sampled_from([2, 3, 4, 16]), st.sampled_from([1, 2, 8]))
def test_any_two_sets_converge(
    sets: tuple[list[Item], list[Item]], branching: int, init_threshold: int
) -> None:
    a, b = sets
    init, _, _, _ = run(
        a,
        b,
        branching=branching,
        idlist_threshold=2 * branching,
        initiator_idlist_threshold=init_threshold,
    )
    assert_converged(a, b, init)


@settings(max_examples=60, deadline=None)
@given(two_sets())
def test_converges_under_the_smallest_frame_limit(sets: tuple[list[Item], list[Item]]) -> None:
    a, b = sets
    init, _, _, _ = run(a, b, limits.MIN_RECONCILE_MESSAGE_BYTES)
    assert_converged(a, b, init)


@pytest.mark.parametrize(
    ("n_shared", "n_a", "n_b"),
    [(0, 0, 0), (0, 0, 500), (0, 500, 0), (0, 300, 300), (5000, 0, 0), (2000, 400, 700)],
)
def test_frame_limit_split_path_converges(n_shared: int, n_a: int, n_b: int) -> None:
    rng = random.Random(n_shared * 7 + n_a * 3 + n_b)
    shared = random_items(rng, n_shared)
    a = shared + random_items(rng, n_a)
    b = shared + random_items(rng, n_b)
    limit = limits.MIN_RECONCILE_MESSAGE_BYTES
    init, _, _, sent = run(a, b, limit)
    assert_converged(a, b, init)
    if n_b >= 300:  # the responder must send many ids
        # The split really happened: at least one message is close to the limit.
        assert max(map(len, sent)) > limit - 200
        assert len(sent) > 4


def test_identical_sets_take_one_round_trip() -> None:
    items = random_items(random.Random(1), 5000)
    init, _, total, sent = run(items, list(reversed(items)))
    assert len(sent) == 2 and total < 100
    assert init.have == [] and init.need == []


def test_equal_timestamps_and_long_shared_prefixes() -> None:
    base = b"\x07" * 31
    a = [(5, base + bytes([k])) for k in range(0, 256, 2)]
    b = [(5, base + bytes([k])) for k in range(0, 256, 3)]
    init, _, _, _ = run(a, b)
    assert_converged(a, b, init)


def test_presorted_matches_unsorted() -> None:
    rng = random.Random(3)
    a = random_items(rng, 3000)
    b = a[:2900] + random_items(rng, 50)
    r1 = Reconciler(sorted(a), presorted=True)
    r2 = Reconciler(a)
    assert r1.initiate() == r2.initiate()
    first = Reconciler(a).initiate()
    presorted = Reconciler(sorted(b), presorted=True)
    assert Reconciler(b).reconcile(first) == presorted.reconcile(first)


def test_duplicate_items_are_one_item() -> None:
    items = random_items(random.Random(4), 50)
    init, _, _, _ = run(items + items, items)
    assert init.have == [] and init.need == []


# Traffic grows with the difference, not the total.


def _diff_run(n: int, d: int, seed: int = 7) -> tuple[int, int]:
    rng = random.Random(seed)
    shared = random_items(rng, n)
    extra = random_items(rng, d)
    a = shared + extra[: d // 2]
    b = shared + extra[d // 2 :]
    init, _, total, sent = run(a, b)
    assert_converged(a, b, init)
    return total, len(sent) // 2


@pytest.mark.parametrize(
    ("d", "max_bytes", "max_round_trips"),
    [(0, 64, 1), (1, 1500, 5), (10, 8000, 6), (100, 50_000, 6)],
)
def test_traffic_is_bounded_by_the_difference(d: int, max_bytes: int, max_round_trips: int) -> None:
    total, round_trips = _diff_run(20_000, d)
    assert total <= max_bytes
    assert round_trips <= max_round_trips


def test_traffic_barely_grows_with_the_total() -> None:
    small = sum(_diff_run(10_000, 10, seed)[0] for seed in range(3))
    large = sum(_diff_run(40_000, 10, seed)[0] for seed in range(3))
    # Four times the items add one level of splitting for 10 differences, not 4x traffic.
    assert large <= 1.5 * small


# Rejection.


def _exchange_messages() -> list[tuple[int, bytes]]:
    """(index, bytes) of every message in a small exchange with several rounds."""
    rng = random.Random(11)
    shared = random_items(rng, 400)
    a = shared + random_items(rng, 9)
    b = shared + random_items(rng, 6)
    _, _, _, sent = run(a, b)
    return list(enumerate(sent))


EXCHANGE = _exchange_messages()


def _side_before(index: int) -> Reconciler:
    """A Reconciler in the state that receives message `index` of EXCHANGE."""
    rng = random.Random(11)
    shared = random_items(rng, 400)
    a = shared + random_items(rng, 9)
    b = shared + random_items(rng, 6)
    if index % 2 == 0:
        side = Reconciler(b)
        for i in range(0, index, 2):
            side.reconcile(EXCHANGE[i][1])
    else:
        side = Reconciler(a)
        side.initiate()
        for i in range(1, index, 2):
            side.reconcile(EXCHANGE[i][1])
    return side


def _expect_rejected_or_accepted(side: Reconciler, data: bytes) -> None:
    try:
        side.reconcile(data)
    except RemoteProtocolError:
        assert side.state is ReconcileState.FAILED
        with pytest.raises(LocalProtocolError):
            side.reconcile(data)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_mutation_is_a_remote_protocol_error(data: st.DataObject) -> None:
    index, message = data.draw(st.sampled_from(EXCHANGE))
    pos = data.draw(st.integers(0, len(message) - 1))
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "replace"]))
    byte = data.draw(st.integers(0, 255))
    if kind == "flip":
        mutated = message[:pos] + bytes([message[pos] ^ (byte or 1)]) + message[pos + 1 :]
    elif kind == "insert":
        mutated = message[:pos] + bytes([byte]) + message[pos:]
    elif kind == "delete":
        mutated = message[:pos] + message[pos + 1 :]
    else:
        mutated = message[:pos] + bytes([byte]) * data.draw(st.integers(1, 40)) + message[pos:]
    _expect_rejected_or_accepted(_side_before(index), mutated)


@pytest.mark.parametrize(("index", "message"), EXCHANGE)
def test_every_truncation_is_a_decode_error(index: int, message: bytes) -> None:
    for cut in range(len(message)):
        side = _side_before(index)
        with pytest.raises(DecodeError):
            side.reconcile(message[:cut])
        assert side.state is ReconcileState.FAILED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_responder_fed_garbage(data: bytes) -> None:
    side = Reconciler(random_items(random.Random(2), 50))
    _expect_rejected_or_accepted(side, data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_responder_fed_garbage_ranges(body: bytes) -> None:
    side = Reconciler(random_items(random.Random(2), 50))
    _expect_rejected_or_accepted(side, pack([1, body]))


def test_oversize_message_rejected() -> None:
    side = Reconciler([], max_message_bytes=limits.MIN_RECONCILE_MESSAGE_BYTES)
    rng = random.Random(5)
    ids = sorted(rng.randbytes(32) for _ in range(70))
    message = encode_message([Range(INFINITY, 2, ids=tuple(ids))])
    assert len(message) > limits.MIN_RECONCILE_MESSAGE_BYTES
    with pytest.raises(DecodeError):
        side.reconcile(message)
    assert Reconciler([]).reconcile(message)  # the same message under the default limit


def test_too_many_ranges_rejected() -> None:
    # Alternate Skip and empty IdList ranges: the smallest valid ranges (3 and 4 bytes).
    n = limits.MAX_RECONCILE_RANGES + 1
    ranges = [Range(Bound(k + 1), k % 2 * 2) for k in range(n - 1)]
    message = encode_message([*ranges, Range(INFINITY, 2)])
    assert len(message) <= limits.MAX_RECONCILE_MESSAGE_BYTES
    with pytest.raises(DecodeError):
        Reconciler([]).reconcile(message)


def test_out_of_order_bounds_rejected() -> None:
    fp = fingerprint(0, 0)
    message = encode_message(
        [Range(Bound(10), MODE_FINGERPRINT, fp), Range(Bound(10), MODE_FINGERPRINT, fp)]
    )
    side = Reconciler([])
    with pytest.raises(UnexpectedMessage):
        side.reconcile(message)
    assert side.state is ReconcileState.FAILED


def test_reply_after_done_is_unexpected() -> None:
    items = random_items(random.Random(6), 40)
    init = Reconciler(items)
    resp = Reconciler(items)
    reply = resp.reconcile(init.initiate())
    assert reply is not None and resp.done
    assert init.reconcile(reply) is None
    with pytest.raises(UnexpectedMessage):
        init.reconcile(reply)
    with pytest.raises(LocalProtocolError):
        init.reconcile(reply)


def test_api_misuse_is_local() -> None:
    r = Reconciler([])
    r.initiate()
    with pytest.raises(LocalProtocolError):
        r.initiate()
    with pytest.raises(LocalProtocolError):
        Reconciler([], max_message_bytes=limits.MIN_RECONCILE_MESSAGE_BYTES - 1)
    with pytest.raises(LocalProtocolError):
        Reconciler([(1, b"short")])
    with pytest.raises(LocalProtocolError):
        Reconciler([(-1, bytes(32))])
    with pytest.raises(LocalProtocolError):
        Reconciler([(2**63, bytes(32))])
    with pytest.raises(LocalProtocolError):
        Reconciler([(True, bytes(32))])
    with pytest.raises(LocalProtocolError):
        Reconciler([(2, bytes(32)), (1, bytes(32))], presorted=True)
    with pytest.raises(LocalProtocolError):
        Reconciler([], branching=1)


def test_responder_learns_nothing() -> None:
    a = random_items(random.Random(8), 30)
    b = a[:20]
    _, resp, _, _ = run(a, b)
    assert resp.have == [] and resp.need == []


# Codec.


@pytest.mark.parametrize(("index", "message"), EXCHANGE)
def test_decoded_messages_reencode_to_the_same_bytes(index: int, message: bytes) -> None:
    assert encode_message(decode_message(message)) == message


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8100"), (16383, "ff7f"), (16384, "818000")],
)
def test_varint(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded


# Vectors.


@pytest.mark.parametrize("case", VECTORS["fingerprints"], ids=lambda c: str(len(c["ids"])))
def test_fingerprint_vectors(case: dict[str, object]) -> None:
    ids = [bytes.fromhex(i) for i in case["ids"]]  # type: ignore[attr-defined]
    total = sum(int.from_bytes(i, "little") for i in ids)
    assert fingerprint(total, len(ids)).hex() == case["fingerprint"]


def _items(raw: list[list[object]]) -> list[Item]:
    return [(int(ts), bytes.fromhex(str(i))) for ts, i in raw]  # type: ignore[call-overload]


@pytest.mark.parametrize("case", VECTORS["exchanges"], ids=lambda c: c["name"])
def test_exchange_vectors(case: dict[str, object]) -> None:
    limit = int(case["max_message_bytes"])  # type: ignore[call-overload]
    init = Reconciler(_items(case["initiator_items"]), max_message_bytes=limit)  # type: ignore[arg-type]
    resp = Reconciler(_items(case["responder_items"]), max_message_bytes=limit)  # type: ignore[arg-type]
    expected = [bytes.fromhex(m["hex"]) for m in case["messages"]]  # type: ignore[attr-defined]
    msg: bytes | None = init.initiate()
    got: list[bytes] = []
    while msg is not None:
        got.append(msg)
        reply = resp.reconcile(msg)
        assert reply is not None
        got.append(reply)
        msg = init.reconcile(reply)
    assert got == expected
    assert sorted(i.hex() for i in init.have) == case["have"]
    assert sorted(i.hex() for i in init.need) == case["need"]


NEGATIVE = [(group["items"], case) for group in VECTORS["negative"] for case in group["cases"]]


@pytest.mark.parametrize(("items", "case"), NEGATIVE, ids=[c["name"] for _, c in NEGATIVE])
def test_negative_vectors(items: list[list[object]], case: dict[str, object]) -> None:
    side = Reconciler(_items(items), max_message_bytes=int(case["max_message_bytes"]))  # type: ignore[call-overload]
    if case["role"] == "initiator":
        side.initiate()
    for before in case["before"]:  # type: ignore[attr-defined]
        side.reconcile(bytes.fromhex(before))
    expect = getattr(errors, str(case["expect"]))
    with pytest.raises(RemoteProtocolError) as info:
        side.reconcile(bytes.fromhex(str(case["message"])))
    assert type(info.value) is expect
    assert side.state is ReconcileState.FAILED


def _walk(a: list[Item], b: list[Item]) -> set[tuple[ReconcileState, ReconcileState]]:
    """Every (state before, state after) step both sides take reconciling a with b."""
    init, resp = Reconciler(a), Reconciler(b)
    steps = set()
    before = init.state
    msg: bytes | None = init.initiate()
    steps.add((before, init.state))
    while msg is not None:
        before = resp.state
        reply = resp.reconcile(msg)
        steps.add((before, resp.state))
        assert reply is not None
        before = init.state
        msg = init.reconcile(reply)
        steps.add((before, init.state))
    return steps


def test_reconciler_moves_only_along_its_transition_table() -> None:
    from protocol.reconcile import _TRANSITIONS

    allowed = {(state, nxt) for (state, _), nxt in _TRANSITIONS.items()}
    rng = random.Random(7)
    big = [(rng.randrange(1 << 40), rng.randbytes(32)) for _ in range(3000)]
    seen = _walk(big, big[:2000]) | _walk(big[:5], big[:3])
    assert seen <= allowed
    assert seen == allowed  # every transition of the table is reached by these two runs


def test_reconciler_refuses_what_its_table_does_not_list() -> None:
    init, resp = Reconciler([(1, bytes(32))]), Reconciler([(1, bytes(32))])
    reply = resp.reconcile(init.initiate())
    assert resp.state is ReconcileState.DONE and reply is not None
    with pytest.raises(LocalProtocolError):
        init.initiate()  # initiate() twice
    with pytest.raises(UnexpectedMessage):
        resp.reconcile(reply)  # a message after DONE is the peer's fault
    assert resp.state is ReconcileState.FAILED
