"""What the node reports about itself: Prometheus text (`/metrics`) and the sync lag.

Counts only: no ids, names or content. The metric names are part of the interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from node.local import Peer
from protocol.identity import NodeId


@dataclass(frozen=True, slots=True)
class Figures:
    """One reading of the node's counters, for `/metrics`."""

    uptime_s: float
    records: Mapping[str, int]  # held, by kind
    peers_trusted: int
    peers_connected: int
    received: int  # new records received from peers since start
    traffic: Mapping[str, int]  # node.sync.TRAFFIC
    rejected: Mapping[str, int]  # inputs rejected since start, by reason
    sync_lag_s: float
    inflight: int  # records asked of peers and not yet received
    rapid_response: Mapping[str, int] = field(default_factory=dict)  # node/notices.py counts


def sync_lag_s(peers: Mapping[NodeId, Peer], connected: Mapping[NodeId, object], now: int) -> float:
    """Seconds since the least recently synced connected peer last finished a round."""
    ages = [
        max(0.0, (now - peer.last_sync) / 1000)
        for node_id, peer in peers.items()
        if node_id in connected and peer.last_sync
    ]
    return round(max(ages), 1) if ages else 0.0


def prometheus(f: Figures) -> str:
    """The Prometheus text format of one reading."""
    lines: list[str] = []

    def metric(name: str, kind: str, help: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    metric("canopy_up", "gauge", "1 while the node runs.", [("", 1)])
    metric(
        "canopy_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        [("", round(f.uptime_s, 3))],
    )
    metric(
        "canopy_records",
        "gauge",
        "Records held, by kind.",
        [(f'{{kind="{k}"}}', n) for k, n in sorted(f.records.items())],
    )
    metric("canopy_peers_trusted", "gauge", "Trusted peers.", [("", f.peers_trusted)])
    metric("canopy_peers_connected", "gauge", "Peers connected now.", [("", f.peers_connected)])
    metric(
        "canopy_records_received_total",
        "counter",
        "New records received from peers since start.",
        [("", f.received)],
    )
    for key in ("bytes_sent", "bytes_received", "record_bytes_sent", "record_bytes_received"):
        metric(
            f"canopy_{key}_total",
            "counter",
            f"{key.replace('_', ' ').capitalize()} on peer connections since start.",
            [("", f.traffic[key])],
        )
    metric(
        "canopy_reconcile_rounds_total",
        "counter",
        "Reconciliation messages sent since start.",
        [("", f.traffic["reconcile_rounds"])],
    )
    metric(
        "canopy_rejected_total",
        "counter",
        "Inputs rejected since start, by reason.",
        [(f'{{reason="{r}"}}', n) for r, n in sorted(f.rejected.items())],
    )
    metric(
        "canopy_sync_lag_seconds",
        "gauge",
        "Seconds since the least recently synced connected peer finished a round.",
        [("", f.sync_lag_s)],
    )
    metric(
        "canopy_sync_inflight_records",
        "gauge",
        "Records asked of peers and not yet received (the backlog being fetched).",
        [("", f.inflight)],
    )
    rr = f.rapid_response
    if rr:
        for key, what in (
            ("help_open", "Open help requests this node can read."),
            ("help_overdue", "Open help requests past their first-response target unanswered."),
            ("checkins_watched", "Check-in plans of others this node watches."),
            ("checkins_missed", "Watched check-in plans whose check-in is missed now."),
            ("checkins_escalated", "Watched check-in plans escalated."),
            ("on_call_circles", "Circles this node is on call for now."),
            ("away", "1 while this node is off duty."),
        ):
            metric(f"canopy_{key}", "gauge", what, [("", rr.get(key, 0))])
    return "\n".join(lines) + "\n"
