"""atheris harness: the box-stream decoder (network bytes after the handshake).

The input is split at its first byte into chunks fed one by one, so chunking is fuzzed too.
Any exception other than a RemoteProtocolError is a crash.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from protocol.boxstream import BoxStreamDecoder, BoxStreamEncoder, StreamEnd
    from protocol.errors import RemoteProtocolError

KEY = bytes(range(32))
NONCE = bytes(range(24))


def seeds() -> list[bytes]:
    encoder = BoxStreamEncoder(KEY, NONCE)
    return [b"\x07" + encoder.encode(b"\x00\x00\x00\x03abc") + encoder.goodbye()]


def one_input(data: bytes) -> None:
    if not data:
        return
    step = max(1, data[0])
    decoder = BoxStreamDecoder(KEY, NONCE)
    try:
        for start in range(1, len(data), step):
            decoder.receive_data(data[start : start + step])
            while True:
                event = decoder.next_event()
                if event is None or isinstance(event, StreamEnd):
                    break
        decoder.close_unclean()
    except RemoteProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
