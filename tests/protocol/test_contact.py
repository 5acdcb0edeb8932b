"""Know-who in protocol/: field validation, content codecs, filters, ranking, the new
messages and their session rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.contact import (
    DAY_MS,
    UNKNOWN_DISTANCE,
    Contact,
    Filter,
    Share,
    Vouch,
    VouchAbout,
    check_channel,
    check_lang,
    check_region,
    is_stale,
    rank_score,
    tokens,
    trust_distances,
)
from protocol.errors import (
    ContactError,
    DecodeError,
    LocalProtocolError,
    UnexpectedMessage,
    VerificationError,
)
from protocol.identity import Identity
from protocol.messages import (
    Answer,
    AnswerStatus,
    IntroReply,
    IntroRequest,
    IntroStatus,
    Query,
    decode_message,
    encode_message,
)
from protocol.session import PeerAnswer, PeerQuery, SyncSession

UID = bytes(range(16))


def build(**overrides: object) -> Contact:
    fields: dict[str, object] = {
        "uid": UID,
        "share": "peers",
        "kind": "lawyer",
        "name": "Amina Wanjiru",
        "region": "KE-28",
        "langs": ["sw", "en"],
        "channels": ["phone:+254 700 111 222", "signal:amina.42"],
        "specialties": ["land-rights"],
        "review": 10,
    }
    fields.update(overrides)
    return Contact.build(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "lawyr", "unknown kind"),
        ("name", "   ", "needs a --name"),
        ("name", "x" * 300, "limited to"),
        ("name", "bad\x07name", "control characters"),
        ("region", "XX", "unknown region"),
        ("region", "KE-999", "unknown region"),
        ("region", "Kenya", "unknown region"),
        ("langs", ["zz"], "unknown language"),
        ("langs", ["english"], "unknown language"),
        ("langs", ["sw"] * 9, "at most"),
        ("channels", ["fax:123"], "unknown channel type"),
        ("channels", ["phone"], "TYPE:VALUE"),
        ("channels", ["phone:0700111222"], "international"),
        ("channels", ["email:not-an-address"], "e-mail"),
        ("channels", ["url:ftp://x"], "http"),
        ("channels", ["signal:??"], "signal"),
        ("channels", ["telegram:ab"], "telegram"),
        ("channels", ["matrix:alice"], "matrix"),
        ("specialties", ["Land Rights!"], "specialty"),
        ("share", "public", "unknown --share"),
        ("notes", "x" * 3000, "limited to"),
    ],
)
def test_every_field_is_validated_with_one_clear_message(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ContactError, match=message) as info:
        build(**{field: value})
    assert "\n" not in str(info.value)


def test_values_are_normalised() -> None:
    c = build(region="ke-28", langs=["SW-ke"], channels=["PHONE:+254 (700) 111-222"])
    assert c.region == "KE-28"
    assert c.langs == ("sw-KE",)
    assert c.channels == (("phone", "+254700111222"),)
    assert check_region("TZ") == "TZ"
    assert check_lang("fr-CD") == "fr-CD"
    assert check_channel("email:help@example.org") == ("email", "help@example.org")


def test_content_round_trip_and_teaser_reveals_only_what_the_policy_allows() -> None:
    c = build(share="on-request", notes="walk-ins Tuesdays")
    assert Contact.from_content(c.to_content()) == c
    teaser = c.teaser_of(b"\x01" * 32)
    content = teaser.to_content()
    assert set(content) == {
        "v", "uid", "share", "kind", "region", "langs", "specialties", "review", "introducer",
    }  # fmt: skip
    assert Contact.from_content(content) == teaser
    assert teaser.name == "" and teaser.channels == ()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.pop("name"),
        lambda c: c.update(kind="spy"),
        lambda c: c.update(region="ZZ"),
        lambda c: c.update(langs=["zz"]),
        lambda c: c.update(channels=[["phone", "123"]]),
        lambda c: c.update(uid=b"short"),
        lambda c: c.update(extra=1),
        lambda c: c.update(v=2),
        lambda c: c.update(langs=["sw"] * 20),
    ],
)
def test_malformed_content_is_a_decode_error(mutate: object) -> None:
    content = build().to_content()
    mutate(content)  # type: ignore[operator]
    with pytest.raises(DecodeError):
        Contact.from_content(content)


def test_vouch_round_trip() -> None:
    for vouch in (
        Vouch(VouchAbout.PEER, b"\x02" * 32),
        Vouch(VouchAbout.CONTACT, b"\x02" * 32, UID),
    ):
        assert Vouch.from_content(vouch.to_content()) == vouch
    with pytest.raises(DecodeError):
        Vouch.from_content({"v": 1, "about": "nobody", "subject": b"\x02" * 32})


def test_filter_matching_region_language_and_text() -> None:
    c = build()
    assert Filter.build(region="KE").matches(c)
    assert Filter.build(region="KE-28").matches(c)
    assert not Filter.build(region="KE-30").matches(c)
    assert not Filter.build(region="TZ").matches(c)
    assert Filter.build(region="KE-30").matches(build(region="KE"))  # country-wide serves KE-30
    assert Filter.build(lang="sw-TZ").matches(c)  # primary subtag
    assert not Filter.build(lang="fr").matches(c)
    assert Filter.build(text="mombasa land").matches(c)  # KE-28 is Mombasa
    assert Filter.build(text="AMINA").matches(c)
    assert not Filter.build(text="shelter").matches(c)
    assert not Filter.build(kind="shelter").matches(c)
    with pytest.raises(ContactError):
        Filter.build(text="x" * 300)


def test_ranking_distance_then_vouchers_then_freshness_and_stale_ranks_lower() -> None:
    now = 1000 * DAY_MS
    near = rank_score(1, 1, now, now, stale=False)
    far = rank_score(2, 1, now, now, stale=False)
    many = rank_score(2, 4, now, now, stale=False)
    old = rank_score(1, 1, now - 300 * DAY_MS, now, stale=False)
    assert near > many > far
    assert near > old
    assert rank_score(1, 1, now, now, stale=True) < far
    assert rank_score(UNKNOWN_DISTANCE + 5, 1, now, now, False) == rank_score(
        UNKNOWN_DISTANCE, 1, now, now, False
    )
    assert is_stale(review=now - 1, last_vouch=0, now_ms=now)
    assert not is_stale(review=now - 1, last_vouch=now - DAY_MS, now_ms=now)  # re-vouched


def test_trust_distances() -> None:
    me, b, a, d = b"m", b"b", b"a", b"d"
    distances = trust_distances(me, [b], [(b, a), (a, d), (d, b"e")])
    assert distances == {me: 0, b: 1, a: 2, d: 3}


# -- messages and session ------------------------------------------------------------------


def _roundtrip(message: object) -> object:
    framed = encode_message(message)  # type: ignore[arg-type]
    return decode_message(framed[4:])


def test_new_messages_round_trip() -> None:
    asker = Identity(b"\x05" * 32)
    messages = [
        Query(b"q" * 16, 2, Filter.build("land", "lawyer", "KE", "sw")),
        Answer(b"q" * 16, AnswerStatus.OK, (b"record-bytes",)),
        IntroRequest.create(asker, b"r" * 16, b"t" * 32, b"i" * 32, "hello", 1),
        IntroReply(b"r" * 16, IntroStatus.DECLINED),
    ]
    for message in messages:
        assert _roundtrip(message) == message


def test_intro_request_is_signed_by_the_asker() -> None:
    request = IntroRequest.create(Identity(b"\x05" * 32), b"r" * 16, b"t" * 32, b"i" * 32)
    request.verify()
    from dataclasses import replace

    replace(request, hops=0).verify()  # hops is not signed: relays decrement it
    with pytest.raises(VerificationError):
        replace(request, asker=Identity(b"\x06" * 32).node_id.raw).verify()


@pytest.mark.parametrize(
    "body",
    [
        [8, b"q" * 16, 0, {}],  # depth 0
        [8, b"q" * 16, limits.MAX_QUERY_DEPTH + 1, {}],
        [8, b"q" * 15, 1, {}],
        [8, b"q" * 16, 1, {"kind": "spy"}],
        [8, b"q" * 16, 1, {"region": "ZZ"}],
        [8, b"q" * 16, 1, {"colour": "red"}],
        [8, b"q" * 16, 1, {"text": "x" * 201}],
        [8, b"q" * 16, 1, {"text": "  padded "}],  # not in normal form
        [9, b"q" * 16, 7, []],
        [9, b"q" * 16, 0, [b"x"] * (limits.MAX_ANSWER_RECORDS + 1)],
        [9, b"q" * 16, 0, [b"x" * 70_000] * 4],  # over MAX_ANSWER_BYTES
        [10, b"r" * 16, b"t" * 32, b"i" * 32, b"a" * 32, "", 9, b"s" * 64],
        [11, b"r" * 16, 0],
    ],
)
def test_malformed_or_oversized_query_and_answer_are_decode_errors(body: list[object]) -> None:
    from protocol.encoding import pack

    with pytest.raises(DecodeError):
        decode_message(pack(body))  # type: ignore[arg-type]


def _open_pair() -> tuple[SyncSession, SyncSession]:
    left, right = SyncSession(initiator=True), SyncSession(initiator=False)
    right.receive_data(left.hello())
    left.receive_data(right.hello())
    return left, right


def test_session_answers_only_queries_asked_and_bounds_open_queries() -> None:
    left, right = _open_pair()
    flt = Filter.build(kind="lawyer")
    [event] = right.receive_data(left.query(b"a" * 16, 2, flt))
    assert isinstance(event, PeerQuery) and event.filter == flt
    [answer] = left.receive_data(right.answer(b"a" * 16, [b"rec"]))
    assert isinstance(answer, PeerAnswer) and answer.records == (b"rec",)
    # An answer nobody asked for is a protocol error.
    rogue = encode_message(Answer(b"z" * 16, AnswerStatus.OK, ()))
    with pytest.raises(UnexpectedMessage):
        left.receive_data(rogue)

    left, right = _open_pair()
    for i in range(limits.MAX_QUERIES_IN_FLIGHT):
        right.receive_data(left.query(bytes([i]) * 16, 1, flt))
    with pytest.raises(UnexpectedMessage):
        right.receive_data(encode_message(Query(b"\xff" * 16, 1, flt)))


def test_sender_keeps_to_the_in_flight_bound_until_an_answer_frees_a_slot() -> None:
    left, right = _open_pair()
    flt = Filter.build(kind="lawyer")
    for i in range(limits.MAX_QUERIES_IN_FLIGHT):
        right.receive_data(left.query(bytes([i]) * 16, 1, flt))
    assert left.query_capacity == 0
    # Sending a ninth would get us cut off: the session refuses it as our own misuse.
    with pytest.raises(LocalProtocolError):
        left.query(b"\xff" * 16, 1, flt)
    # A refusal is an answer too: it frees the slot.
    left.receive_data(right.answer(b"\x00" * 16, (), AnswerStatus.REFUSED))
    assert left.query_capacity == 1
    right.receive_data(left.query(b"\xff" * 16, 1, flt))
    # An answered query is closed: a second answer to it is unexpected.
    with pytest.raises(UnexpectedMessage):
        left.receive_data(encode_message(Answer(b"\x00" * 16, AnswerStatus.OK, ())))


def test_session_intro_reply_only_for_requests_sent() -> None:
    left, right = _open_pair()
    request = IntroRequest.create(Identity(b"\x05" * 32), b"r" * 16, b"t" * 32, b"i" * 32)
    right.receive_data(left.intro_request(request))
    assert right.can_reply_intro(b"r" * 16)
    left.receive_data(right.intro_reply(b"r" * 16, IntroStatus.APPROVED))
    with pytest.raises(UnexpectedMessage):
        left.receive_data(encode_message(IntroReply(b"r" * 16, IntroStatus.APPROVED)))


def test_share_policies_are_the_five_documented() -> None:
    assert [s.value for s in Share] == ["peers", "network", "on-request", "private", "circle"]


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(min_size=1, max_size=40),
    notes=st.text(max_size=40),
    region=st.sampled_from(["KE", "KE-28", "KE-30", "CD-KN", "SN"]),
    specialties=st.lists(st.sampled_from(["land-rights", "gbv", "press-freedom"]), max_size=2),
)
def test_search_words_are_the_tokens_of_words(
    name: str, notes: str, region: str, specialties: list[str]
) -> None:
    c = Contact(
        UID, Share.NETWORK, "lawyer", region, ("sw",), tuple(specialties), name, notes=notes
    )
    assert c.search_words() == tuple(dict.fromkeys(tokens(c.words())))


def test_region_and_language_libraries_load_on_first_use() -> None:
    code = (
        "import sys, protocol.contact as c; "
        "assert 'pycountry' not in sys.modules and 'langcodes' not in sys.modules; "
        "c.check_region('KE'); c.check_lang('sw'); "
        "assert 'pycountry' in sys.modules and 'langcodes' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
