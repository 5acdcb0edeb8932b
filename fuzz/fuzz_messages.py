"""atheris harness: the message reader and the sync session (decrypted stream bytes).

Any exception other than a RemoteProtocolError is a crash.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from protocol.errors import RemoteProtocolError
    from protocol.messages import Hello, Records, Want, encode_message
    from protocol.session import SyncSession


def seeds() -> list[bytes]:
    return [
        encode_message(Hello(1, "n", ("ws://x/canopy",)))
        + encode_message(Want((b"\x01" * 32,)))
        + encode_message(Records((b"\x00" * 40,)))
    ]


def one_input(data: bytes) -> None:
    for initiator in (False, True):
        session = SyncSession(initiator=initiator)
        with contextlib.suppress(RemoteProtocolError):
            session.receive_data(data)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
