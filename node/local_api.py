"""The one client of a running node's local API (node.json gives its address and token),
for the CLI's commands and for `wipe`.

`call` answers None when no node answers on this data directory, so a command can do the
work itself; a node that refuses the request (HTTP 400) raises `NodeRefused` with its reason.
`lines` follows a streaming route (`/v1/watch`). Not aiohttp: a CLI process makes one
request at a time, and `canopy run` never imports this module. `call` speaks HTTP/1.1 over
one socket itself (the node's own API on loopback, JSON with a Content-Length): importing
urllib.request (http.client, email) cost a `canopy guides` more than the request does.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from protocol import limits
from protocol.errors import NodeLost, NodeNotRunning, NodeRefused

if TYPE_CHECKING:
    import urllib.request


def _request(
    path: Path, method: str, route: str, body: dict[str, Any] | None
) -> urllib.request.Request | None:
    import urllib.request

    from node.local import read_runtime

    runtime = read_runtime(path)
    if runtime is None:
        return None
    headers = {"Authorization": f"Bearer {runtime['token']}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return urllib.request.Request(
        runtime["api"] + route,
        method=method,
        headers=headers,
        data=json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None),
    )


def running(path: Path) -> bool:
    from node.local import read_runtime

    return read_runtime(path) is not None


def call(
    path: Path,
    method: str,
    route: str,
    body: dict[str, Any] | None = None,
    timeout: float = 5,
) -> dict[str, Any] | None:
    """The node's JSON answer; None when no node runs or answers on this data directory."""
    from node.local import read_runtime

    runtime = read_runtime(path)
    if runtime is None:
        return None
    url = urlsplit(runtime["api"])
    data = json.dumps(body).encode() if body is not None else b""
    head = [
        f"{method} {route} HTTP/1.1",
        f"Host: {url.netloc}",
        f"Authorization: Bearer {runtime['token']}",
        "Connection: close",
        "Accept-Encoding: identity",
        f"Content-Length: {len(data)}",
    ]
    if body is not None:
        head.append("Content-Type: application/json")
    try:
        if url.scheme != "http" or url.hostname is None or url.port is None:
            return None
        with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
            status, answer = _response(sock)
    except (OSError, ValueError):
        return None
    if status == 400:
        try:
            message = json.loads(answer).get("error", "")
        except (ValueError, AttributeError):
            message = ""
        raise NodeRefused(message or f"the node refused: HTTP {status}") from None
    if not 200 <= status < 300:
        return None
    try:
        parsed = json.loads(answer)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of the one HTTP/1.1 response on `sock` (Content-Length, chunked, or
    up to the close); ValueError if it is not one."""
    got = bytearray()
    while (end := got.find(b"\r\n\r\n")) < 0:
        if len(got) > limits.LOCAL_API_MAX_HEAD_BYTES:
            raise ValueError("response head too long")
        piece = sock.recv(65536)
        if not piece:
            raise ValueError("connection closed before the response head")
        got += piece
    lines = bytes(got[:end]).decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError("not an HTTP/1 response")
    status = int(rest.split(" ", 1)[0])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = bytearray(got[end + 4 :])
    length = headers.get("content-length")
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    if length is not None and not chunked:
        want = int(length)
        while len(body) < want:
            piece = sock.recv(max(65536, want - len(body)))
            if not piece:
                raise ValueError("connection closed inside the body")
            body += piece
        return status, bytes(body[:want])
    while piece := sock.recv(1 << 20):
        body += piece
    return status, _unchunked(bytes(body)) if chunked else bytes(body)


def _unchunked(data: bytes) -> bytes:
    out = bytearray()
    at = 0
    while True:
        eol = data.index(b"\r\n", at)
        size = int(data[at:eol].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += data[eol + 2 : eol + 2 + size]
        at = eol + 2 + size + 2


def notify(path: Path) -> None:
    """Tell a running node the data directory changed (nothing when none runs)."""
    call(path, "POST", "/v1/notify")


def lines(
    path: Path, route: str, on_open: Callable[[], None] = lambda: None
) -> Iterator[dict[str, Any]]:
    """Each JSON line of a streaming route, until the node closes it; `on_open` runs once
    the node accepted the request."""
    import urllib.error
    import urllib.request

    request = _request(path, "GET", route, None)
    if request is None:
        raise NodeNotRunning(f"no node is running on {path}; start it with: canopy run")
    try:
        with urllib.request.urlopen(request, timeout=None) as response:
            on_open()
            for line in response:
                if line.strip():
                    yield json.loads(line)
    except urllib.error.HTTPError as exc:
        raise NodeRefused(f"the node refused: HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise NodeLost(f"lost the node: {type(reason).__name__}") from None
