"""A deterministic network simulator for the sync conversation (the FoundationDB / VOPR idea).

Many nodes' real `protocol.conversation.Conversation`s run in one process on a virtual
clock over a seeded simulated network; each node keeps its records in its own real SQLite
database (stdlib sqlite3) holding real signed, sealed record bytes. Same seed, same run,
byte for byte: `World.digest` is a hash of every delivered message. No real I/O happens
besides SQLite, and nothing here reads the wall clock or OS randomness.

    network.py   the virtual clock, links (latency, jitter, loss, partitions)
    peer.py      one simulated node: the thin driver acting on conversation events
    scenario.py  trust graphs, the record pool, hostile behaviours, phases and figures
"""
