"""Withdrawal (tombstone) payloads: round trip and a decoder that raises only DecodeError."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from protocol import limits
from protocol.errors import DecodeError
from protocol.lifecycle import Withdrawal

ids = st.binary(min_size=32, max_size=32)


@given(st.lists(ids, min_size=1, max_size=limits.MAX_WITHDRAW_TARGETS, unique=True), st.data())
def test_withdrawal_round_trip(targets: list[bytes], data: st.DataObject) -> None:
    successor = data.draw(st.none() | ids.filter(lambda i: i not in targets))
    withdrawal = Withdrawal(tuple(targets), successor)
    assert Withdrawal.from_payload(withdrawal.to_payload()) == withdrawal


@given(st.binary(max_size=600))
def test_withdrawal_decoder_raises_only_decode_errors(blob: bytes) -> None:
    with contextlib.suppress(DecodeError):
        Withdrawal.from_payload(blob)
