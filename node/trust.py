"""Making and withdrawing trust: invites, accepting them, trusting by id, distrusting.

Works on an unlocked data directory whether or not the node runs (a running node picks up
changes through the store's epoch). An invite's one-time secret becomes a one-time SHS
network key (docs/SPEC.md, "Invites"), so redeeming it needs no extra message.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.local import Local, Network, Peer, random
from protocol import limits
from protocol.encoding import Value
from protocol.errors import CanopyError, DecodeError, InviteError
from protocol.identity import NodeId
from protocol.invite import Invite, check_address, normalise_address
from protocol.names import check_name, name_taken
from protocol.networks import default_network_name, network_tag


@dataclass(frozen=True, slots=True)
class PendingInvite:
    """An invite we issued: its secret, until it is used or expires."""

    secret: bytes
    capability: bytes
    expires: int
    network: bytes | None = None  # the tag of the network it invites to (None: the first)

    def to_value(self) -> dict[str, Value]:
        return {"capability": self.capability, "expires": self.expires, "network": self.network}


@dataclass(frozen=True, slots=True)
class Accepted:
    """What accepting an invite did: the peer trusted, and the network it brought if new."""

    peer: Peer
    network: Network
    added: bool  # the invite's network was added beside `beside`
    beside: list[Network]
    invited_name: str = ""  # the inviter's name for the network ("": the invite had none)


async def create_invite(
    local: Local,
    addresses: list[str],
    now_ms: int,
    lifetime_ms: int,
    network: str | None = None,
) -> Invite:
    if not addresses:
        raise CanopyError("no address to put in the invite; pass --address ws://HOST:PORT/canopy")
    chosen = (await local.networks())[0] if network is None else await local.network_named(network)
    invite = Invite.create(
        local.identity,
        name=await local.name(),
        addresses=list(dict.fromkeys(normalise_address(a) for a in addresses)),
        network_key=chosen.key,
        secret=random(32),
        expires=now_ms + lifetime_ms,
        network_name=chosen.name,  # the invitee goes by it unless it gives its own
    )
    pending = PendingInvite(invite.secret, invite.capability(), invite.expires, chosen.tag)
    await local.store.put_row("invites", invite.secret, pending.to_value())
    return invite


async def pending_invites(local: Local, now_ms: int) -> list[PendingInvite]:
    """Unexpired invites, oldest first; expired ones are deleted on the way."""
    out: list[PendingInvite] = []
    for secret, value in (await local.store.rows("invites")).items():
        capability, expires = value.get("capability"), value.get("expires")
        if not isinstance(capability, bytes) or not isinstance(expires, int) or expires <= now_ms:
            await local.store.delete_row("invites", secret)
            continue
        network = value.get("network")
        tag = network if isinstance(network, bytes) else None
        out.append(PendingInvite(secret, capability, expires, tag))
    out.sort(key=lambda p: p.expires)
    return out


async def redeem_invite(local: Local, invite: PendingInvite, node_id: NodeId, now_ms: int) -> Peer:
    """The inviter's side: a client proved it holds `invite`; trust it and burn the invite."""
    await local.store.delete_row("invites", invite.secret)
    peers = await local.peers()
    peer = peers.get(node_id) or Peer(node_id=node_id, added=now_ms)
    networks = await local.networks()
    tag = invite.network or networks[0].tag
    if any(n.tag == tag for n in networks):  # not if the network was left meanwhile
        peer.join(tag)
    await local.save_peer(peer)
    return peer


async def note_shared_network(local: Local, node_id: NodeId, network: Network) -> bool:
    """A trusted peer completed a handshake under `network`'s key, so it holds it: it is a
    member (trusted by id, or a member from before the network was recorded). Whether new."""
    peer = (await local.peers()).get(node_id)
    if peer is None or not network.name or not peer.join(network.tag):
        return False
    await local.save_peer(peer)
    return True


async def accept_invite(
    local: Local, code: str, now_ms: int, network_name: str | None = None
) -> Accepted:
    """The invitee's side: trust the inviter and keep the one-time capability for later.

    An invite for a network this node is not in adds that network beside the others, named
    `network_name` or else by its tag (the same default name on every member); a node
    alone in the network it was created with (no peer, no invite) joins instead."""
    invite = Invite.from_code(code)
    invite.check_time(now_ms)
    if invite.node_id == local.node_id:
        raise InviteError("this is your own invite")
    if network_name is not None:
        problem = check_name(network_name) or (None if network_name.strip() else "name is empty")
        if problem:
            raise CanopyError(f"network name refused: {problem}")
    peers = await local.peers()
    networks = await local.networks()
    beside = list(networks)
    tag = network_tag(invite.network_key)
    known = [n for n in networks if n.key == invite.network_key]
    added = False
    if known:
        network = known[0]
    elif not peers and not await local.store.rows("invites") and len(networks) == 1:
        await local.set_network_key(invite.network_key, network_name or invite.network_name or None)
        network, beside = (await local.networks())[0], []
    else:
        name = network_name or _invited_name(invite, networks) or default_network_name(tag)
        network = await local.add_network(name, invite.network_key, now_ms)
        added = True
    existing = peers.get(invite.node_id)
    peer = existing or Peer(node_id=invite.node_id, added=now_ms)
    # Invite.from_code applied the name rule; a name another peer goes by is not taken.
    others = [p.name for n, p in peers.items() if n != invite.node_id]
    if not peer.name and not name_taken(invite.name, [*others, await local.name()]):
        peer.name = invite.name
    # An invite made before addresses were normalised may carry `ws://host:port`.
    invited = [normalise_address(a) for a in invite.addresses]
    peer.addresses = list(dict.fromkeys([*invited, *peer.addresses]))[: limits.MAX_INVITE_ADDRESSES]
    peer.invite_capability = invite.capability()
    peer.join(tag)
    await local.save_peer(peer)
    return Accepted(peer, network, added, beside, invite.network_name)


def _invited_name(invite: Invite, networks: list[Network]) -> str:
    """The inviter's name for its network (the invite's decoder applied the name rule), if
    no network of ours goes by it already ("": the default name is used)."""
    if name_taken(invite.network_name, [n.name for n in networks]):
        return ""
    return invite.network_name


async def trust_node(
    local: Local, node_text: str, address: str | None, name: str, now_ms: int
) -> Peer:
    """Trust an id compared out of band (by phone, with its safety code)."""
    node_id = parse_node_id(node_text)
    if node_id == local.node_id:
        raise CanopyError("that is this node's own id")
    peers = await local.peers()
    peer = peers.get(node_id) or Peer(node_id=node_id, added=now_ms)
    if address:
        if check_address(address) is not None:
            raise CanopyError(
                "the address must be a ws:// or wss:// URL, e.g. ws://HOST:7420/canopy"
            )
        address = normalise_address(address)
        if address not in peer.addresses:
            peer.addresses.insert(0, address)
    peer.name = name or peer.name
    await local.save_peer(peer)
    return peer


async def distrust(local: Local, ref: str) -> Peer:
    peer = await resolve_peer(local, ref)
    await local.remove_peer(peer.node_id)
    return peer


def parse_node_id(text: str) -> NodeId:
    try:
        return NodeId.from_text(text.strip())
    except DecodeError:
        raise CanopyError(f"not a node id: {text!r}") from None


def match_peers(peers: list[Peer], ref: str) -> list[Peer]:
    """Peers a person may mean by `ref`: the full id, or else every peer whose name equals it
    or whose id starts with it (4+ characters). Names are chosen by the peers themselves, so
    a name never wins over an id prefix: both match, and the caller reports the ambiguity."""
    ref = ref.strip()
    exact = [p for p in peers if str(p.node_id) == ref.lower()]
    if exact:
        return exact
    by_name = {p.node_id: p for p in peers if p.name and p.name == ref}
    if len(ref) >= 4:
        by_name.update({p.node_id: p for p in peers if str(p.node_id).startswith(ref.lower())})
    return list(by_name.values())


async def resolve_peer(local: Local, ref: str) -> Peer:
    """A trusted peer by full id, unique id prefix (4+ characters) or exact name."""
    matches = match_peers(list((await local.peers()).values()), ref)
    if not matches:
        raise CanopyError(f"no trusted peer matches {ref.strip()!r}")
    if len(matches) > 1:
        raise CanopyError(f"{ref.strip()!r} matches {len(matches)} peers; give more of the id")
    return matches[0]
