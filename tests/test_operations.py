"""Operating a node (issue 6) with real `canopy run` processes on 127.0.0.1.

The service unit's ExecStart runs the installed console script; /metrics is scraped and
parsed; logs of two syncing nodes hold no planted plaintext; a bundle is imported into a
running node; a peer behind a SOCKS5 proxy reaches a .onion address through it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from node.demo import NodeProcess, free_port, scan_for, wait_until
from tests.conftest import Net

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "canopy.service"
MARKER = "TAMARIND-4471"  # planted in guide text; must never reach a log line
NAMES = ("Alpha Legal Aid", "Beta Rights Collective")


async def connected(node: NodeProcess, count: int) -> bool:
    peers = (await node.json("peers"))["peers"]
    return sum(p["state"] == "connected" for p in peers) == count


async def guide_titles(node: NodeProcess) -> list[str]:
    return sorted(g["title"] for g in (await node.json("guides"))["guides"])


def api_url(node: NodeProcess) -> str:
    return str(json.loads((node.data / "node.json").read_text())["api"])


# -- Prometheus text format ----------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="[^"\\]*",?)*\})? (\S+)$')


def parse_metrics(text: str) -> dict[str, float]:
    """Samples keyed by name plus labels; every line must be a comment or a valid sample, and
    every sampled metric must have HELP and TYPE."""
    samples: dict[str, float] = {}
    described: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            what, name = line.split()[1:3]
            described.setdefault(name, set()).add(what)
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        name, labels, value = match.groups()
        samples[name + (labels or "")] = float(value)
        assert described.get(name) == {"HELP", "TYPE"}, name
    return samples


# -- the service unit ----------------------------------------------------------------------------


def unit_service_section(path: Path) -> dict[str, list[str]]:
    """[Service] keys of a systemd unit (keys may repeat, so each maps to a list)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_service_unit_execstart_runs_the_installed_console_script(tmp_path: Path) -> None:
    service = unit_service_section(UNIT)
    for key, value in {
        "User": "canopy",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ReadWritePaths": "/var/lib/canopy",
        "StateDirectoryMode": "0700",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == [value], key
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == "/opt/canopy/bin/canopy"  # the console script of the README's install
    installed = Path(sys.executable).parent / "canopy"
    assert installed.exists(), "the canopy console script is not installed in this venv"

    # The same command, with the machine's paths mapped into tmp_path.
    data, creds, config = tmp_path / "var-lib-canopy", tmp_path / "creds", tmp_path / "etc.toml"
    creds.mkdir()
    (creds / "passphrase").write_text("service passphrase\n")
    config.write_text(
        (ROOT / "config.example.toml")
        .read_text()
        .replace('listen = "127.0.0.1:7420"', f'listen = "127.0.0.1:{free_port()}"')
    )
    mapping = {
        "/opt/canopy/bin/canopy": str(installed),
        "/var/lib/canopy": str(data),
        "/etc/canopy/config.toml": str(config),
        "${CREDENTIALS_DIRECTORY}": str(creds),
    }
    command = []
    for arg in argv:
        for old, new in mapping.items():
            arg = arg.replace(old, new)
        command.append(arg)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANOPY_")}
    env["PYTHONPATH"] = str(ROOT)  # the console script, running this checkout's code
    init = [str(installed), "--data", str(data), "--passphrase-file", str(creds / "passphrase")]
    subprocess.run([*init, "init", "--name", "Service Org"], env=env, check=True, timeout=60)

    helped = subprocess.run(
        [*command, "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage: canopy run" in helped.stdout and "--log-format" in helped.stdout

    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert "running; peer endpoint" in proc.stdout.readline()
        runtime = json.loads((data / "node.json").read_text())
        import urllib.request

        with urllib.request.urlopen(runtime["api"] + "/healthz", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok"}
        proc.send_signal(signal.SIGTERM)  # what systemd's KillSignal sends
        assert proc.wait(timeout=20) == 0
        logs = proc.stderr.read().splitlines()
        assert logs and all(json.loads(line)["level"] for line in logs)  # --log-format json
        assert not (data / "node.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    analyze = shutil.which("systemd-analyze")
    if analyze:  # offline syntax check of the unit (no systemd needed)
        result = subprocess.run(
            [analyze, "verify", "--man=no", str(UNIT)], capture_output=True, text=True, timeout=60
        )
        syntax = [
            line
            for line in result.stderr.splitlines()
            if "Unknown" in line or "Invalid" in line or "Failed to parse" in line
        ]
        assert syntax == [], result.stderr


# -- watching, logs, sneakernet into a running node ----------------------------------------------


async def test_metrics_status_and_logs_hold_no_content(net: Net, tmp_path: Path) -> None:
    a = await net.node("A", NAMES[0], CANOPY_LOG_FORMAT="json")
    b = await net.node("B", NAMES[1])
    await a.start()
    await b.start()
    _, code, _ = await a.cli("invite", "--address", a.address)
    await b.cli("accept", code.strip())
    await wait_until("link", lambda: connected(a, 1))

    guide = tmp_path / "g.md"
    guide.write_text(f"# Safe houses {MARKER}\n\nCall +254 700 {MARKER} at night.\n")
    await a.cli("publish", "guide", str(guide), "--to", "peers", "--region", "KE")
    guide.unlink()

    async def b_has(count: int) -> bool:
        return len(await guide_titles(b)) == count

    await wait_until("guide on B", lambda: b_has(1))

    async with aiohttp.ClientSession() as http:
        async with http.get(api_url(a) + "/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}  # nothing else, no token
        async with http.get(api_url(a) + "/v1/status") as response:
            assert response.status == 401  # the rest of the API still needs the token
        async with http.get(api_url(a) + "/metrics") as response:
            assert response.status == 401  # counts only, but still behind the token
        token = json.loads((a.data / "node.json").read_text())["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        async with http.get(api_url(a) + "/metrics", headers=bearer) as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            text = await response.text()
    metrics = parse_metrics(text)
    assert metrics["canopy_up"] == 1
    assert metrics["canopy_uptime_seconds"] > 0
    assert metrics['canopy_records{kind="guide"}'] == 1
    assert metrics["canopy_peers_trusted"] == 1
    assert metrics["canopy_peers_connected"] == 1
    assert metrics["canopy_bytes_sent_total"] > 0
    assert metrics["canopy_bytes_received_total"] > 0
    assert metrics["canopy_sync_lag_seconds"] >= 0
    assert "canopy_rejected_total" in text
    assert MARKER not in text and NAMES[1] not in text and b.node_id not in text

    status = await a.json("status")
    assert status["running"] is True and status["uptime_s"] > 0
    assert status["records"] == {"guide": 1, "circle": 2}  # --to peers: A's peers circle
    (peer,) = status["peer_list"]
    assert peer["name"] == NAMES[1] and peer["state"] == "connected"
    assert peer["last_sync"] is not None and peer["sync_age_s"] >= 0
    assert set(status["sync"]) == {"lag_s", "inflight", "received"}
    assert status["knowwho"] == {"ready": True, "contacts": 0}
    assert isinstance(status["rejected"], dict)
    _, table, _ = await a.cli("status")
    assert "PEER" in table and "connected" in table and NAMES[1] in table
    assert "know-who:   0 contacts indexed" in table

    # Sneakernet into a running node: A, stopped, publishes and exports; B imports while up.
    await a.stop()
    guide.write_text(f"# Border crossing {MARKER}\n\nCarried by hand.\n")
    await a.cli("publish", "guide", str(guide), "--to", "network")
    guide.unlink()
    bundle = tmp_path / "for-b.bundle"
    _, out, _ = await a.cli("export", "--for", NAMES[1], "--out", str(bundle))
    assert "4 records" in out  # the two guides and A's peers circle (made, B added)
    assert MARKER.encode() not in bundle.read_bytes()
    _, out, err = await b.cli("import", str(bundle))
    assert "1 new, 3 already held, 0 rejected" in out
    assert "import: 4/4 records" in err  # plain progress lines without a terminal
    await wait_until("imported guide on B", lambda: b_has(2))
    status_b = await b.json("status")
    assert status_b["records"] == {"guide": 2, "circle": 2}

    for node in (a, b):
        await node.stop()
    # A logged JSON lines; B text. Neither holds content, names, phone numbers or secrets.
    a_lines = a.log_path.read_text().splitlines()
    assert a_lines and all(isinstance(json.loads(line), dict) for line in a_lines)
    assert any("connected to" in line for line in b.log_path.read_text().splitlines())
    needles = [MARKER, *NAMES, "+254 700", "Safe houses", "Border crossing", "correct horse"]
    scanned, hits = scan_for(tmp_path, [n.encode() for n in needles])
    logs = [h for h in hits if h.endswith(".log")]
    assert scanned >= 2 and logs == [], logs


# -- SOCKS5 and .onion ---------------------------------------------------------------------------

ONION = "canopypartnerx2fm4vhyqe3oq6o7dj5bfrxh6dksomvqkiydyvotu47hqd.onion"


class Socks5Server:
    """A minimal SOCKS5 (RFC 1928) CONNECT proxy that records what it was asked for and maps
    .onion names to local ports, as Tor would map them to onion services."""

    def __init__(self, onions: dict[tuple[str, int], int]) -> None:
        self.onions = onions
        self.requests: list[tuple[int, str, int]] = []  # (address type, host, port)
        self.relayed = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.relayed += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            version, count = await reader.readexactly(2)
            methods = await reader.readexactly(count)
            if version != 5 or 0 not in methods:
                writer.write(b"\x05\xff")
                return
            writer.write(b"\x05\x00")
            version, command, _, kind = await reader.readexactly(4)
            if kind == 1:
                host = ".".join(str(b) for b in await reader.readexactly(4))
            elif kind == 3:
                (length,) = await reader.readexactly(1)
                host = (await reader.readexactly(length)).decode()
            else:
                host = (await reader.readexactly(16)).hex()
            (port,) = struct.unpack(">H", await reader.readexactly(2))
            self.requests.append((kind, host, port))
            target = ("127.0.0.1", self.onions[(host, port)]) if host.endswith(".onion") else None
            if command != 1 or target is None:
                writer.write(b"\x05\x04\x00\x01" + bytes(6))  # host unreachable
                return
            up_reader, up_writer = await asyncio.open_connection(*target)
            writer.write(b"\x05\x00\x00\x01" + bytes(6))
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def test_socks5_proxy_carries_the_connection_to_an_onion_address(net: Net) -> None:
    a = await net.node("A", "Onion Host")
    await a.start()
    proxy = Socks5Server({(ONION, 80): a.port})
    await proxy.start()
    try:
        b = await net.node(
            "B", "Behind Tor", CANOPY_NETWORK_SOCKS5=f"socks5://127.0.0.1:{proxy.port}"
        )
        onion_address = f"ws://{ONION}/canopy"
        _, code, _ = await a.cli("invite", "--address", onion_address)
        _, accepted, _ = await b.cli("accept", code.strip())
        assert onion_address in accepted  # .onion addresses are valid in invites
        await b.start()
        await wait_until("B connected to A through the proxy", lambda: connected(b, 1))
        assert await connected(a, 1)
        # The name went to the proxy unresolved (address type 3: domain), port 80.
        assert (3, ONION, 80) in proxy.requests
        assert all(kind == 3 for kind, _, _ in proxy.requests)
        assert proxy.relayed > 0
    finally:
        await proxy.close()
