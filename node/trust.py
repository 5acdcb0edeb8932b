"""Making and withdrawing trust: invites, accepting them, trusting by id, distrusting.

Works on an unlocked data directory whether or not the node runs (a running node picks up
changes through the store's epoch). An invite's one-time secret becomes a one-time SHS
network key (docs/SPEC.md, "Invites"), so redeeming it needs no extra message.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.local import Local, Peer, random
from protocol import limits
from protocol.encoding import Value
from protocol.errors import CanopyError, DecodeError, InviteError
from protocol.identity import NodeId
from protocol.invite import Invite, check_address, normalise_address
from protocol.names import name_taken


@dataclass(frozen=True, slots=True)
class PendingInvite:
    """An invite we issued: its secret, until it is used or expires."""

    secret: bytes
    capability: bytes
    expires: int

    def to_value(self) -> dict[str, Value]:
        return {"capability": self.capability, "expires": self.expires}


async def create_invite(
    local: Local, addresses: list[str], now_ms: int, lifetime_ms: int
) -> Invite:
    if not addresses:
        raise CanopyError("no address to put in the invite; pass --address ws://HOST:PORT/canopy")
    invite = Invite.create(
        local.identity,
        name=await local.name(),
        addresses=list(dict.fromkeys(normalise_address(a) for a in addresses)),
        network_key=await local.network_key(),
        secret=random(32),
        expires=now_ms + lifetime_ms,
    )
    pending = PendingInvite(invite.secret, invite.capability(), invite.expires)
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
        out.append(PendingInvite(secret, capability, expires))
    out.sort(key=lambda p: p.expires)
    return out


async def redeem_invite(local: Local, invite: PendingInvite, node_id: NodeId, now_ms: int) -> Peer:
    """The inviter's side: a client proved it holds `invite`; trust it and burn the invite."""
    await local.store.delete_row("invites", invite.secret)
    peers = await local.peers()
    peer = peers.get(node_id) or Peer(node_id=node_id, added=now_ms)
    await local.save_peer(peer)
    return peer


async def accept_invite(local: Local, code: str, now_ms: int) -> Peer:
    """The invitee's side: trust the inviter and keep the one-time capability for later."""
    invite = Invite.from_code(code)
    invite.check_time(now_ms)
    if invite.node_id == local.node_id:
        raise InviteError("this is your own invite")
    peers = await local.peers()
    current = await local.network_key()
    if invite.network_key != current:
        has_invites = bool(await local.store.rows("invites"))
        if peers or has_invites:
            raise InviteError(
                "this invite is for another network than the one this node already belongs to"
            )
        await local.set_network_key(invite.network_key)
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
    await local.save_peer(peer)
    return peer


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
