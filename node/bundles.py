"""Sneakernet: `canopy export --for PEER` and `canopy import FILE` on an unlocked data dir.

Owns choosing what a peer may receive in a bundle (the same rule and SQL as sync) and
putting a bundle's records through exactly the checks and accept path of network sync
(`ingest.check_records`, then `ingest.accept_records`, or the running node's
`Node.accept` when a node runs on the directory). Nothing from a bundle is stored
unless the whole bundle opened and verified. Bundles are encrypted; no temp file holds
anything readable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from node.ingest import Accepted, accept_records, check_records
from node.local import Local, Peer, random, write_private
from node.progress import Progress
from node.sealed_files import read_sealed_file
from node.trust import resolve_peer
from protocol import limits
from protocol.bundle import open_bundle, seal_bundle
from protocol.errors import BundleError, RemoteProtocolError
from protocol.identity import NodeId
from protocol.networks import NetworkView, shared_networks
from protocol.record import Record


@dataclass(frozen=True, slots=True)
class Exported:
    peer_label: str
    records: int
    bytes: int
    networks: tuple[str, ...] = ()  # the networks whose records it carries


@dataclass(slots=True)
class Imported:
    sender: NodeId
    sender_label: str
    records: int = 0
    new: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    other_network: int = 0  # skipped: records of a network this node is not in


async def bundle_view(
    local: Local, peer: Peer, network: str | None
) -> tuple[NetworkView, list[str]]:
    """Which networks' records a bundle for `peer` carries (as sync would over a connection
    with it): those the two share, or with `network` that one alone (the peer must be a
    member). A peer whose networks are not known yet (trusted by id, never connected) is
    taken to be in our first network, as before there were several. Also their names."""
    networks = await local.networks()
    if network is not None:
        chosen = await local.network_named(network)
        if chosen.tag not in peer.networks:
            raise BundleError(
                f"{peer.label} is not a member of network {chosen.name!r} here: a bundle for it"
                " carries none of that network's records"
            )
        shared = frozenset({chosen.tag})
    else:
        shared = shared_networks((n.tag for n in networks), peer.networks)
        if not peer.networks:
            shared = frozenset({networks[0].tag})
    names = [n.name for n in networks if n.tag in shared]
    return NetworkView(shared, networks[0].tag), names


async def export_bundle(
    local: Local,
    peer_ref: str,
    out: Path,
    now_ms: int,
    stream: TextIO | None = None,
    network: str | None = None,
) -> Exported:
    """Seal every record `peer_ref` may receive from us into a new file `out` (with
    `network`: of that network only, plus what is not network-scoped)."""
    peer = await resolve_peer(local, peer_ref)
    if out.exists():
        raise BundleError(f"{out} already exists; choose a new file name")
    if not out.parent.is_dir():
        raise BundleError(f"{out.parent} is not a directory")
    view, names = await bundle_view(local, peer, network)
    items = await local.store.exchangeable_items(peer.node_id.raw, now_ms, view)
    ids = [rid for _, rid in items]
    datas: list[bytes] = []
    with Progress("export", len(ids), stream) as progress:
        for start in range(0, len(ids), limits.BUNDLE_CHUNK):
            chunk = ids[start : start + limits.BUNDLE_CHUNK]
            found = await local.store.records_for_peer(chunk, peer.node_id.raw, now_ms, view)
            datas.extend(found[rid] for rid in chunk if rid in found)
            progress.advance(len(chunk))
    if len(datas) > limits.MAX_BUNDLE_RECORDS:
        raise BundleError(
            f"{len(datas)} records are more than one bundle may carry ({limits.MAX_BUNDLE_RECORDS})"
        )
    sealed = seal_bundle(local.identity, peer.node_id, datas, created=now_ms, random=random)
    write_private(out, sealed, exclusive=True)
    return Exported(peer.label, len(datas), len(sealed), tuple(names))


Accept = Callable[[list[Record]], Awaitable[Accepted]]


async def import_bundle(
    local: Local,
    path: Path,
    now_ms: int,
    stream: TextIO | None = None,
    accept: Accept | None = None,
) -> Imported:
    """Open a bundle for us from a trusted peer; check and accept its records like sync does.

    `accept`: the running node's accept path; by default `accept_records` on `local`."""
    data = read_sealed_file(
        path,
        limit=limits.MAX_BUNDLE_BYTES,
        error=BundleError,
        kind="bundle",
        too_large=f"bundle refused: larger than {limits.MAX_BUNDLE_BYTES}",
    )
    try:
        bundle = open_bundle(data, local.identity, now_ms)
    except RemoteProtocolError as exc:
        raise BundleError(f"{path}: bundle refused, nothing imported: {exc}") from None
    if bundle.sender == local.node_id:
        raise BundleError(f"{path}: this bundle was made by this node")
    peers = await local.peers()
    sender = peers.get(bundle.sender)
    if sender is None:
        raise BundleError(
            f"{path}: bundle refused: it comes from {bundle.sender.short}, a node you do not "
            "trust (trust it first: canopy trust ID)"
        )
    result = Imported(bundle.sender, sender.label, records=len(bundle.records))
    networks = await local.networks()
    ours = NetworkView(frozenset(n.tag for n in networks), networks[0].tag)
    with Progress("import", len(bundle.records), stream) as progress:
        for start in range(0, len(bundle.records), limits.BUNDLE_CHUNK):
            chunk = bundle.records[start : start + limits.BUNDLE_CHUNK]
            good: list[Record] = []
            for outcome in check_records(chunk, now_ms, bundle.sender):
                if isinstance(outcome, RemoteProtocolError):
                    result.rejected[f"record_{type(outcome).__name__}"] += 1
                elif not ours.carries(outcome):  # a network we left, or were never in
                    result.other_network += 1
                else:
                    good.append(outcome)
            if accept is None:
                accepted = await accept_records(local, good, now_ms)
            else:
                accepted = await accept(good)
            result.new += len(accepted.fresh)
            result.rejected.update(accepted.refused)
            progress.advance(len(chunk))
    for reason, n in result.rejected.items():
        await local.store.count_rejection(f"bundle_{reason}", n)
    return result
