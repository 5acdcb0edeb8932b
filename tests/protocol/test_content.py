"""Content schemas (protocol/content.py) and the name rule (protocol/names.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import limits
from protocol.content import Alert, Guide, check_content
from protocol.encoding import Value
from protocol.envelope import open_record, seal_record
from protocol.errors import DecodeError
from protocol.identity import Identity
from protocol.names import check_name, name_taken
from protocol.record import Kind, Scope
from tests.strategies import contents, kinds, seeded, values

ALICE = Identity(b"\xa1" * 32)
BOB = Identity(b"\xb0" * 32)
NOW = 1_700_000_000_000

_KEYS = [
    "title", "text", "lang", "region", "topics", "format", "filename", "urgency",
    "v", "uid", "share", "kind", "langs", "specialties", "review", "name", "channels",
    "notes", "introducer", "about", "subject",
]  # fmt: skip
schema_like: st.SearchStrategy[dict[str, Value]] = st.dictionaries(
    st.sampled_from(_KEYS) | st.text(max_size=6), values(2), max_size=8
)


@given(kinds, contents | schema_like)
def test_content_schema_raises_nothing_but_decode_error(
    kind: Kind, content: dict[str, Value]
) -> None:
    with contextlib.suppress(DecodeError):  # anything else fails the test
        check_content(kind, content)


@given(st.dictionaries(st.sampled_from(_KEYS[:8]), values(1), max_size=8))
def test_guide_and_alert_schemas_raise_nothing_but_decode_error(
    content: dict[str, Value],
) -> None:
    for kind in (Kind.GUIDE, Kind.ALERT):
        with contextlib.suppress(DecodeError):
            check_content(kind, content)


@pytest.mark.parametrize(
    "content",
    [
        {"title": b"bytes"},
        {"title": "t", "topics": 7},
        {"title": "t", "topics": [1]},
        {"title": "t", "topics": ["x"] * (limits.MAX_GUIDE_TOPICS + 1)},
        {"title": "x" * (limits.MAX_GUIDE_TITLE_BYTES + 1)},
        {"title": "t", "lang": "x" * (limits.MAX_GUIDE_FIELD_BYTES + 1)},
        {"title": "t", "text": {"a": 1}},
        {"title": "t", "extra": "x"},
        {"text": "no title"},
    ],
)
def test_malformed_guide_content_rejected(content: dict[str, Value]) -> None:
    with pytest.raises(DecodeError):
        check_content(Kind.GUIDE, content)


def test_guide_bounds_exactly_at_limit_accepted() -> None:
    guide = Guide.from_content(
        {
            "title": "é" * (limits.MAX_GUIDE_TITLE_BYTES // 2),
            "topics": ["t" * limits.MAX_GUIDE_FIELD_BYTES] * limits.MAX_GUIDE_TOPICS,
            "text": "",
        }
    )
    assert len(guide.topics) == limits.MAX_GUIDE_TOPICS


@pytest.mark.parametrize(
    "content",
    [
        {"text": b"bytes", "urgency": "high"},
        {"text": "x" * (limits.MAX_ALERT_TEXT_BYTES + 1), "urgency": "high"},
        {"text": "t", "urgency": 3},
        {"text": "t", "urgency": "panic"},
        {"text": "   ", "urgency": "normal"},
        {"text": "t"},
    ],
)
def test_malformed_alert_content_rejected(content: dict[str, Value]) -> None:
    with pytest.raises(DecodeError):
        check_content(Kind.ALERT, content)
    assert Alert.from_content({"text": "x" * limits.MAX_ALERT_TEXT_BYTES, "urgency": "high"})


def test_open_record_refuses_a_body_that_breaks_its_kind_schema() -> None:
    def sealed(kind: Kind, content: dict[str, Value]) -> object:
        record = seal_record(
            ALICE,
            kind,
            content,
            created=NOW,
            expires=NOW + 1000,
            scope=Scope.NETWORK,
            recipients=[BOB.node_id],
            network_key=None,
            random=seeded("content"),
        )
        return open_record(record, BOB, None)

    assert sealed(Kind.GUIDE, {"title": "ok", "topics": ["a"]}) is not None
    for kind, content in [
        (Kind.GUIDE, {"title": b"x"}),
        (Kind.ALERT, {"text": b"x", "urgency": "high"}),
        (Kind.CONTACT, {"name": "not a contact"}),
        (Kind.VOUCH, {"about": "peer"}),
        (Kind.TOMBSTONE, {}),
    ]:
        with pytest.raises(DecodeError):
            sealed(kind, content)


@pytest.mark.parametrize(
    "name",
    ["\x1b[2J", "a\x1b]0;t\x07", "x\u202ey", "x\u2066y", "a\nb", "a\x9bb", "x" * 129],
)
def test_name_rule_refuses_controls_bidi_and_long_names(name: str) -> None:
    assert check_name(name) is not None


def test_name_rule_keeps_the_joiners_persian_names_are_spelt_with() -> None:
    assert (
        check_name("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") is None
    )  # ZWNJ inside a word
    assert check_name("\u0915\u094d\u200d\u0937") is None  # ZWJ in a Devanagari conjunct
    for stray in ("\u200cAlice", "Alice\u200d", "a \u200c b", "a\u200c\u200cb"):
        assert check_name(stray) is not None


def test_same_name_however_spelled() -> None:
    assert check_name("Alice Legal Aid") is None
    assert name_taken("ALICE  legal aid", ["Bob", "Alice Legal Aid"])
    assert name_taken("Ａｌｉｃｅ", ["alice"])  # NFKC: full-width letters
    assert not name_taken("Alice", ["Alicia", ""])
    assert not name_taken("", [""])
