"""The one client of a running node's local API (node.json gives its address and token),
for the CLI's commands and for `wipe`.

`call` answers None when no node answers on this data directory, so a command can do the
work itself; a node that refuses the request (HTTP 400) raises `NodeRefused` with its reason.
`lines` follows a streaming route (`/v1/watch`). urllib, not aiohttp: a CLI process makes
one request at a time, and `canopy run` never imports this module.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from protocol.errors import NodeLost, NodeNotRunning, NodeRefused


def _request(
    path: Path, method: str, route: str, body: dict[str, Any] | None
) -> urllib.request.Request | None:
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
    request = _request(path, method, route, body)
    if request is None:
        return None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        if exc.code != 400:
            return None
        try:
            message = json.loads(exc.read()).get("error", "")
        except (ValueError, OSError):
            message = ""
        raise NodeRefused(message or f"the node refused: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def notify(path: Path) -> None:
    """Tell a running node the data directory changed (nothing when none runs)."""
    call(path, "POST", "/v1/notify")


def lines(
    path: Path, route: str, on_open: Callable[[], None] = lambda: None
) -> Iterator[dict[str, Any]]:
    """Each JSON line of a streaming route, until the node closes it; `on_open` runs once
    the node accepted the request."""
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
