"""A deterministic network simulator for the sync conversation (the FoundationDB / VOPR idea).

Many nodes' real `protocol.conversation.Conversation`s run in one process on a virtual
clock over a seeded simulated network; each node keeps its records in its own real SQLite
database (stdlib sqlite3) holding real signed, sealed record bytes. Same seed, same run,
byte for byte: `World.digest` is a hash of every delivered message. No real I/O happens
besides SQLite, and nothing here reads the wall clock or OS randomness.

    network.py   the virtual clock, links (latency, jitter, loss, partitions)
    peer.py      one simulated node: the thin driver acting on conversation events
    hostile.py   hostile drivers: flood, withhold, replay, silent
    graph.py     the trust graph: community servers, small nodes, honest components joined
    world.py     the nodes, connections, crashes, restarts and the partition; `Config`
    pool.py      the run's real sealed records and its alert
    checks.py    what each node may hold; convergence in each phase
    scenario.py  a run: its phases and the figures it measures
"""
