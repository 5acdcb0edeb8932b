"""atheris harness: the record decoder, signature check and the payload codecs a relay
parses (withdrawals, revocation certificates). Any exception other than a
RemoteProtocolError is a crash.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from protocol.errors import RemoteProtocolError
    from protocol.identity import Identity
    from protocol.lifecycle import Withdrawal
    from protocol.record import Kind, Record
    from protocol.revocation import RevocationCertificate, check_revocation, make_revocation


def seeds() -> list[bytes]:
    return [make_revocation(Identity(bytes(range(32))), created=1_700_000_000_000).to_bytes()]


def one_input(data: bytes) -> None:
    try:
        record = Record.from_bytes(data)
        assert Record.from_bytes(record.to_bytes()).to_bytes() == data  # canonical
        record.check_time(1_700_000_000_000)
        if record.kind is Kind.REVOCATION:
            check_revocation(record)
        record.verify()
    except RemoteProtocolError:
        pass
    for decode in (Withdrawal.from_payload, RevocationCertificate.from_payload):
        with contextlib.suppress(RemoteProtocolError):
            decode(data)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
