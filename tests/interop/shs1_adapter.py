"""Our side of the shs1-test harness: drive protocol/handshake.py over stdin/stdout.

Usage (the harness passes hex arguments):
    shs1_adapter.py server NETWORK_KEY SERVER_SK SERVER_PK
    shs1_adapter.py client NETWORK_KEY SERVER_PK
On any handshake failure it exits non-zero without writing another byte, as the
harness requires. This is test tooling: it may use os.urandom, protocol/ may not.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nacl.bindings import crypto_sign_keypair

from protocol.errors import RemoteProtocolError
from protocol.handshake import (
    ClientHandshake,
    HandshakeState,
    ServerHandshake,
    SessionKeys,
)

EXIT_REJECTED = 1
EXIT_EOF = 2
EXIT_USAGE = 64


def _write(data: bytes) -> None:
    if data:
        os.write(1, data)


def _outcome(keys: SessionKeys) -> bytes:
    out = keys.encrypt_key + keys.encrypt_nonce + keys.decrypt_key + keys.decrypt_nonce
    if os.environ.get("SHS1_ADAPTER_SABOTAGE"):
        # Negative control for the interop test: a wrong outcome must make the harness fail.
        out = bytes([out[0] ^ 1]) + out[1:]
    return out


def _pump(machine: ClientHandshake | ServerHandshake) -> None:
    """Feed stdin to the machine until DONE; exit on EOF or a rejected message."""
    while machine.state is not HandshakeState.DONE:
        chunk = os.read(0, 4096)
        if not chunk:
            sys.exit(EXIT_EOF)
        try:
            reply = machine.receive_data(chunk)
        except RemoteProtocolError:
            sys.exit(EXIT_REJECTED)
        if machine.state is HandshakeState.DONE and isinstance(machine, ServerHandshake):
            _write(reply + _outcome(machine.keys))
            return
        _write(reply)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "server":
        network_key, secret_key = bytes.fromhex(argv[1]), bytes.fromhex(argv[2])
        server = ServerHandshake([network_key], secret_key, os.urandom(32), lambda pk, i: True)
        _pump(server)
    elif len(argv) == 3 and argv[0] == "client":
        network_key, server_pk = bytes.fromhex(argv[1]), bytes.fromhex(argv[2])
        _, secret_key = crypto_sign_keypair()
        client = ClientHandshake(network_key, secret_key, server_pk, os.urandom(32))
        _write(client.start())
        _pump(client)
        _write(_outcome(client.keys))
    else:
        print(__doc__, file=sys.stderr)
        return EXIT_USAGE
    # Wait for the harness to hang up (or SIGTERM us) so it reads everything first.
    while os.read(0, 4096):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
