"""The gossipsub side of `versus-gossipsub`, in its own process (py-libp2p runs on trio).

Reads {"nodes": N, "edges": [[u, v], ...], "messages": PATH} as JSON on stdin, where PATH
holds msgpack list of payloads; builds N py-libp2p hosts on 127.0.0.1 connected along the
edges, subscribes all to one topic, waits for the mesh, publishes every payload from host 0
and prints one JSON document: {"ok": true, "seconds": ..., ...} or {"ok": false, "error": ...}.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from contextlib import AsyncExitStack
from typing import Any

TOPIC = "canopy-bench"


async def _run(config: dict[str, Any]) -> dict[str, Any]:
    import libp2p.pubsub.pubsub as pubsub_module
    import msgpack
    import trio

    # The default per-subscription channel (32) drops messages when a burst arrives faster
    # than the subscriber task runs; make it large so that every message can be counted.
    pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = 1_000_000
    n = int(config["nodes"])
    edges = [tuple(e) for e in config["edges"]]
    with open(config["messages"], "rb") as handle:
        payloads: list[bytes] = msgpack.unpackb(handle.read())
    received = [0] * n
    last_at = [0.0] * n
    all_done = trio.Event()
    outcome: dict[str, Any] = {}
    try:
        await _hosts(config, n, edges, payloads, received, last_at, all_done, outcome)
    except BaseException as exc:  # py-libp2p may raise while tearing down its services
        if not outcome:
            raise
        outcome["teardown_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return outcome


async def _hosts(
    config: dict[str, Any],
    n: int,
    edges: list[Any],
    payloads: list[bytes],
    received: list[int],
    last_at: list[float],
    all_done: Any,
    outcome: dict[str, Any],
) -> None:
    import multiaddr
    import trio
    from libp2p import new_host
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.tools.anyio_service import background_trio_service

    total = len(payloads)
    async with AsyncExitStack() as stack:
        hosts = [new_host() for _ in range(n)]
        for host in hosts:
            await stack.enter_async_context(
                host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")])
            )
        routers = [
            GossipSub(
                protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
                degree=6,
                degree_low=4,
                degree_high=12,
                heartbeat_interval=1,
                # Off so that 1,000 messages are not throttled to 10/s by the default limit.
                spam_protection_enabled=False,
            )
            for _ in range(n)
        ]
        pubsubs = [Pubsub(h, r) for h, r in zip(hosts, routers, strict=True)]
        for pubsub, router in zip(pubsubs, routers, strict=True):
            await stack.enter_async_context(background_trio_service(pubsub))
            await stack.enter_async_context(background_trio_service(router))
        for pubsub in pubsubs:
            await pubsub.wait_until_ready()
        for u, v in edges:
            addr = hosts[v].get_addrs()[0]
            if "/p2p/" not in str(addr):
                addr = addr.encapsulate(multiaddr.Multiaddr(f"/p2p/{hosts[v].get_id()}"))
            await hosts[u].connect(info_from_p2p_addr(addr))
        subs = [await p.subscribe(TOPIC) for p in pubsubs]
        nursery = await stack.enter_async_context(trio.open_nursery())

        async def drain(i: int) -> None:
            while True:
                await subs[i].get()
                received[i] += 1
                last_at[i] = time.monotonic()
                if all(r >= total for r in received[1:]):
                    all_done.set()

        for i in range(1, n):
            nursery.start_soon(drain, i)
        # Let subscriptions propagate and the mesh form (a few heartbeats).
        await trio.sleep(3.0)
        start = time.monotonic()
        queues = pubsubs[0].peer_queues
        for payload in payloads:
            # py-libp2p drops an RPC when a peer's outbound queue (32, as in go-libp2p) is
            # full; pace the publisher on its own queues so that nothing is dropped at source.
            while any(len(q) >= 16 for q in queues.values()):
                await trio.sleep(0.0005)
            await pubsubs[0].publish(TOPIC, payload)
        published = time.monotonic()
        with trio.move_on_after(float(config.get("timeout", 120))):
            await all_done.wait()
        done = time.monotonic()
        nursery.cancel_scope.cancel()
        complete = all(r >= total for r in received[1:])
        outcome.update(
            {
                "ok": complete,
                "seconds": max(last_at[1:]) - start if complete else None,
                "publish_seconds": published - start,
                "waited_seconds": done - start,
                "received": received[1:],
                "messages": total,
                "error": None if complete else "not every host received every message in time",
            }
        )


def main() -> int:
    config = json.loads(sys.stdin.read())
    try:
        import trio

        result = trio.run(_run, config)
    except Exception as exc:  # reported, never faked
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc()[-2000:],
        }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
