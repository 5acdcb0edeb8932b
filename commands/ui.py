"""`ui`: a one-time sign-in link to the running node's web app (`--open` opens a browser);
`ui user add|list|remove`: the named staff of a community server."""

from __future__ import annotations

import argparse
import sys
import webbrowser

from node import local_api as api
from protocol import limits
from protocol.errors import NodeNotRunning, StaffError

from .common import data_dir, now_ms, opened
from .output import print_json, table, when


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


async def cmd_ui_user(args: argparse.Namespace) -> int:
    """`ui user add|list|remove`: through the running node's local API (so a removed user's
    sessions end at once), or on the data directory itself when no node runs."""
    from node.web import routes_staff, staff  # the web app's modules: only when asked

    path = data_dir(args)
    if args.action == "add":
        staff.check_name(args.name)
        answer = api.call(path, "POST", "/v1/ui/users", {"name": args.name, "role": args.role})
        if answer is None:
            async with opened(args) as local:
                token = await staff.add(local.store, args.name, args.role, now_ms())
            url = f"/ui/enrol?token={token}"
            note = "the node is not running: open this path on its web address once it runs"
        else:
            url, note = str(answer["url"]), ""
        print(url, flush=True)  # the first line of stdout, like `canopy ui`
        hours = limits.UI_ENROL_TTL_S // 3600
        print(
            f"(works once, for {hours} hours; give it to {args.name} only) {note}", file=sys.stderr
        )
        return 0
    if args.action == "list":
        answer = api.call(path, "GET", "/v1/ui/users")
        if answer is None:
            async with opened(args) as local:
                rows = [routes_staff.user_json(u) for u in await staff.users(local.store)]
        else:
            rows = list(answer["users"])
        if args.json:
            print_json(rows)
        else:
            table(
                [
                    [
                        str(r["name"]),
                        str(r["role"]),
                        "yes" if r["enrolled"] else "no",
                        when(r["last_signin_ms"]) if r["last_signin_ms"] else "never",
                    ]
                    for r in rows
                ],
                ["NAME", "ROLE", "ENROLLED", "LAST SIGN-IN"],
            )
        return 0
    answer = api.call(path, "POST", "/v1/ui/users/remove", {"name": args.name})
    if answer is None:
        async with opened(args) as local:
            if not await staff.remove(local.store, args.name):
                raise StaffError(f"no staff user named {args.name}")
        print(f"removed {args.name}")
    else:
        print(f"removed {args.name}; {answer['sessions_ended']} session(s) ended")
    return 0
