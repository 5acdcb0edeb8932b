"""`ui`: a one-time sign-in link to the running node's web app (`--open` opens a browser)."""

from __future__ import annotations

import argparse
import sys
import webbrowser

from node import local_api as api
from protocol.errors import NodeNotRunning

from .common import data_dir


async def cmd_ui(args: argparse.Namespace) -> int:
    path = data_dir(args)
    answer = api.call(path, "POST", "/v1/ui/link")
    if answer is None:
        raise NodeNotRunning(f"no node is running on {path}; start it with: canopy run")
    url = str(answer["url"])
    print(url, flush=True)  # the first line of stdout: scripts and tests read it
    print(
        "(works once, for 5 minutes; anyone who has it before you use it can sign in)",
        file=sys.stderr,
    )
    if args.open:
        webbrowser.open(url)
    return 0
