"""`status`: identity, uptime, peers, records, rejected inputs, sync."""

from __future__ import annotations

import argparse

from node import local_api as api

from .common import now_ms, opened
from .output import duration, print_json, table, when


async def cmd_status(args: argparse.Namespace) -> int:
    from node.peer_rows import status_rows, stored_peer_rows
    from node.revocation import revoked_ids

    async with opened(args) as local:
        counts = await local.store.count_by_kind()
        rejections = await local.store.rejections()
        peers = await local.peers()
        name = await local.name()
        revoked = await revoked_ids(local)
        live = api.call(local.path, "GET", "/v1/status")
        # The running node's peer rows, else the store's: built in node/, printed here.
        peer_list = (
            live["peer_list"]
            if live
            else status_rows(await stored_peer_rows(local), now_ms(), running=False)
        )
    # Rejections: what the store has counted (all time), plus what the running node has
    # counted since it last wrote them; the live figures are the node's since it started.
    status = {
        "id": str(local.node_id),
        "name": name,
        "safety_code": local.node_id.safety_code(),
        "running": live is not None,
        "uptime_s": live.get("uptime_s") if live else None,
        "listen": live.get("listen") if live else None,
        "peers": len(peers),
        "connected": live.get("connected") if live else 0,
        "peer_list": peer_list,
        "records": counts,
        "rejected": live.get("rejected", rejections) if live else rejections,
        "revoked": sorted(str(n) for n in revoked),
        "own_key_revoked": local.node_id in revoked,
        "rejected_all_time": rejections,
        "sync": {
            "lag_s": live.get("sync_lag_s") if live else None,
            "inflight": live.get("inflight", 0) if live else 0,
            "received": live.get("received", 0) if live else 0,
        },
        "traffic": live.get("traffic", {}) if live else {},
        "knowwho": live.get("knowwho") if live else None,
        "rapid_response": live.get("rapid_response") if live else None,
    }
    if args.json:
        print_json(status)
        return 0
    uptime = f"yes, up {duration(float(status['uptime_s']))}" if live else "no"
    print(f"node:       {status['name'] or '-'} {status['id']}")
    print(f"safety:     {status['safety_code']}")
    print(f"running:    {uptime}")
    print(f"peers:      {status['peers']} trusted, {status['connected']} connected")
    print(f"records:    {', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'}")
    rejected = status["rejected"]
    print(f"rejected:   {', '.join(f'{k} {v}' for k, v in sorted(rejected.items())) or 'none'}")
    if status["own_key_revoked"]:
        print("WARNING:    THIS NODE'S KEY IS REVOKED; peers refuse it. Create a new identity.")
    for node_id in revoked:
        if node_id != local.node_id:
            who = peers[node_id].label if node_id in peers else node_id.short
            print(f"REVOKED:    {who}: key compromised; its guides are unverified")
    if live:
        sync = status["sync"]
        lag = "-" if not sync["lag_s"] else duration(float(sync["lag_s"]))
        print(
            f"sync:       lag {lag}, {sync['inflight']} records in flight, {sync['received']}"
            " received since start"
        )
        rr = status["rapid_response"] or {}
        print(
            f"response:   {rr.get('help_open', 0)} open help requests"
            f" ({rr.get('help_overdue', 0)} overdue), {rr.get('checkins_watched', 0)} check-in"
            f" plans watched ({rr.get('checkins_missed', 0)} missed)"
            + (f", on call in {rr['on_call_circles']}" if rr.get("on_call_circles") else "")
            + (", off duty" if rr.get("away") else "")
        )
        knowwho = status["knowwho"] or {}
        print(
            f"know-who:   {knowwho.get('contacts', 0)} contacts indexed"
            if knowwho.get("ready")
            else "know-who:   building the index (queries wait for it)"
        )
    if peer_list:
        print()
        table(
            [
                [
                    p["name"] or "-",
                    p["short"],
                    p["state"],
                    when(p["last_sync"]),
                    "-" if p["sync_age_s"] is None else duration(p["sync_age_s"]) + " ago",
                ]
                for p in peer_list
            ],
            ["PEER", "ID", "STATE", "LAST SYNC", "AGE"],
        )
    return 0
