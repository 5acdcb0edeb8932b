"""Interop with independent JavaScript implementations of SHS1 and box-stream.

- shs1-test (the cross-language SHS1 suite) drives tests/interop/shs1_adapter.py in both
  roles: 20 good handshakes and 25 hostile peers per role, plus a sabotaged control run.
- shs1-crypto recomputes every full case of docs/vectors/shs1.json.
- pull-box-stream decodes our frames and encodes frames we decode, byte for byte.

The npm packages are installed into .cache/npm (git-ignored) on first use. No npm on
PATH: skipped. npm present but the install or a harness fails: the test fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol.boxstream import BoxStreamDecoder, BoxStreamEncoder, StreamEnd
from protocol.errors import RemoteProtocolError
from tests.npm_packages import MODULES, npm_env

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PINNED = {
    "shs1-test": "1.1.1",
    "shs1-crypto": "1.0.2",
    "pull-box-stream": "1.0.13",
    "pull-stream": "3.7.0",
    "chloride": "2.4.1",
}
TIMEOUT = 60
SEED = "canopy-interop-1"


@pytest.fixture(scope="module")
def node_env() -> dict[str, str]:
    env = npm_env(PINNED, "the independent SHS1/box-stream peers")
    env.pop("SHS1_ADAPTER_SABOTAGE", None)
    return env


def _adapter_wrapper(tmp_path: Path, role: str) -> Path:
    """shs1-test spawns one executable path; wrap our adapter in a tiny shell script."""
    script = tmp_path / f"shs1-{role}.sh"
    script.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "shs1_adapter.py"}" {role} "$@"\n'
    )
    script.chmod(0o755)
    return script


def _run_suite(env: dict[str, str], role: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    suite = MODULES / "shs1-test" / ("test-server.js" if role == "server" else "test-client.js")
    return subprocess.run(
        ["node", str(suite), str(_adapter_wrapper(tmp_path, role)), SEED],
        env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


@pytest.mark.parametrize("role", ["server", "client"])
def test_shs1_test_suite_passes(node_env: dict[str, str], role: str, tmp_path: Path) -> None:
    proc = _run_suite(node_env, role, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"Passed the {role} test suite" in proc.stdout


@pytest.mark.parametrize("role", ["server", "client"])
def test_shs1_test_suite_catches_a_wrong_outcome(
    node_env: dict[str, str], role: str, tmp_path: Path
) -> None:
    # Negative control: proves the harness really checks our bytes.
    proc = _run_suite(dict(node_env, SHS1_ADAPTER_SABOTAGE="1"), role, tmp_path)
    assert proc.returncode == 20, proc.stdout[-2000:]  # exactly the 20 good handshakes fail
    assert "incorrect outcome" in proc.stdout


def test_shs1_vectors_match_shs1_crypto(node_env: dict[str, str]) -> None:
    vectors = ROOT / "docs" / "vectors" / "shs1.json"
    proc = subprocess.run(
        ["node", str(HERE / "shs1_vectors_check.js"), str(vectors)],
        env=node_env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    ours = {c["name"]: c for c in json.loads(vectors.read_text())["cases"]}
    assert len(theirs) == sum(1 for c in ours.values() if c["kind"] == "full") >= 3
    for case in theirs:
        assert case["verified"], case["name"]
        want = ours[case["name"]]
        for field in ("msg1", "msg2", "msg3", "msg4", "client_keys", "server_keys"):
            assert case[field] == want[field], (case["name"], field)


def _pull_box_stream(env: dict[str, str], job: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(HERE / "boxstream_peer.js")], input=json.dumps(job), env=env,
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


BOX_CASES = [
    ("small", bytes(24), [b"hello", b"world"]),
    ("sizes", bytes(range(24)), [b"\x01", bytes(4096), bytes(range(256)) * 40, b"z" * 4097]),
    ("empty-session", bytes(24), []),
    ("nonce-carry", b"\xff" * 24, [b"a", b"bb" * 3000, b"c"]),
]


@pytest.mark.parametrize("name,nonce,writes", BOX_CASES, ids=[c[0] for c in BOX_CASES])
def test_boxstream_bytes_identical_to_pull_box_stream(
    node_env: dict[str, str], name: str, nonce: bytes, writes: list[bytes]
) -> None:
    key = bytes(range(200, 232))
    enc = BoxStreamEncoder(key, nonce)
    ours = b"".join(enc.encode(w) for w in writes) + enc.goodbye()
    result = _pull_box_stream(node_env, {
        "key": key.hex(), "nonce": nonce.hex(), "encode": [w.hex() for w in writes],
        "decode": ours.hex(),
    })
    # pull-box-stream decodes ours, cleanly ended, into the same bodies...
    assert result["decode_error"] is None
    assert b"".join(bytes.fromhex(b) for b in result["decoded"]) == b"".join(writes)
    # ...and its encoding of the same writes is byte-identical, and decodes here.
    theirs = bytes.fromhex(result["encoded"])
    assert theirs == ours
    dec = BoxStreamDecoder(key, nonce)
    dec.receive_data(theirs)
    events = []
    while (ev := dec.next_event()) is not None:
        events.append(ev)
    assert events[-1] == StreamEnd()
    assert b"".join(e for e in events if isinstance(e, bytes)) == b"".join(writes)


def test_pull_box_stream_rejects_our_truncated_and_tampered_streams(
    node_env: dict[str, str],
) -> None:
    key, nonce = bytes(range(32)), bytes(24)
    enc = BoxStreamEncoder(key, nonce)
    body = enc.encode(b"I <3 TLS") + enc.encode(b"NOT!!!")
    tampered = bytearray(body + enc.goodbye())
    tampered[40] ^= 1
    for wire in (body, bytes(tampered)):
        result = _pull_box_stream(node_env, {"key": key.hex(), "nonce": nonce.hex(),
                                             "encode": [], "decode": wire.hex()})
        assert result["decode_error"] is not None
        dec = BoxStreamDecoder(key, nonce)
        dec.receive_data(wire)
        with pytest.raises(RemoteProtocolError):
            while dec.next_event() is not None:
                pass
            dec.close_unclean()
