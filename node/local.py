"""An unlocked data directory: identity, store, settings and the trusted-peer list.

Used the same way by the running node and by CLI commands run while it is stopped, so
that `publish`, `accept` or `distrust` work either way (a running node notices through
the store's epoch and sequence numbers). Owns the directory's files and their modes; it
must never write a secret or any content outside the sealed store and the key file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nacl.utils
import platformdirs

from node.clock import now_ms
from node.store import Store
from protocol.encoding import Value
from protocol.errors import AlreadyRunning, CanopyError, KeyFileError, NotInitialised, StoreError
from protocol.identity import (
    Identity,
    KeyMaterial,
    NodeId,
    key_file_is_encrypted,
    open_key_file,
    seal_key_file,
)
from protocol.networks import network_tag

KEY_FILE = "identity.key"
DB_FILE = "canopy.db"
RUNTIME_FILE = "node.json"
LOCK_FILE = "node.lock"

random: Callable[[int], bytes] = nacl.utils.random
FIRST_NETWORK_NAME = "default"  # the name of a store's single network before networks had names


def default_data_dir() -> Path:
    env = os.environ.get("CANOPY_DATA")
    return Path(env) if env else Path(platformdirs.user_data_dir("canopy", appauthor=False))


@dataclass(slots=True)
class Peer:
    """A trusted peer, as kept (sealed) in the store."""

    node_id: NodeId
    name: str = ""
    addresses: list[str] = field(default_factory=list)
    added: int = 0
    invite_capability: bytes | None = None  # one-time SHS key until the first handshake
    last_sync: int | None = None
    networks: list[bytes] = field(default_factory=list)  # tags of the networks shared with it

    def to_value(self) -> dict[str, Value]:
        return {
            "name": self.name,
            "addresses": list(self.addresses),
            "added": self.added,
            "invite": self.invite_capability,
            "last_sync": self.last_sync,
            "networks": list(self.networks),
        }

    @classmethod
    def from_value(cls, raw: bytes, value: dict[str, Value]) -> Peer:
        addresses = value.get("addresses")
        invite = value.get("invite")
        last_sync = value.get("last_sync")
        added = value.get("added")
        networks = value.get("networks")
        return cls(
            node_id=NodeId(raw),
            name=str(value.get("name") or ""),
            addresses=[a for a in addresses if isinstance(a, str)]
            if isinstance(addresses, list)
            else [],
            added=added if isinstance(added, int) else 0,
            invite_capability=invite if isinstance(invite, bytes) else None,
            last_sync=last_sync if isinstance(last_sync, int) else None,
            networks=[t for t in networks if isinstance(t, bytes)]
            if isinstance(networks, list)
            else [],
        )

    def join(self, tag: bytes) -> bool:
        """Record that this peer is a member of the network `tag`; whether that is new."""
        if tag in self.networks:
            return False
        self.networks.append(tag)
        return True

    @property
    def label(self) -> str:
        return f"{self.name} ({self.node_id.short})" if self.name else self.node_id.short


@dataclass(frozen=True, slots=True)
class Network:
    """A network this node belongs to, as kept (sealed) in the store. `key` is a secret."""

    name: str
    key: bytes = field(repr=False)
    joined: int = 0

    @property
    def tag(self) -> bytes:
        return network_tag(self.key)

    def to_value(self) -> dict[str, Value]:
        return {"name": self.name, "joined": self.joined}


def _check_private(path: Path) -> None:
    """Refuse a data directory or key file that others can read, as ssh does."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CanopyError(
            f"{path} is accessible to other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod go-rwx {path}"
        )


def write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write `path` with mode 0600 and fsync it; with `exclusive`, never overwrite. On
    failure the partial file is removed. (Backups, bundles: files that leave the node.)"""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def read_passphrase_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CanopyError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    return data.rstrip(b"\r\n")


class Local:
    """An open data directory. Create with `await Local.create(...)` or `await Local.open(...)`."""

    def __init__(self, path: Path, identity: Identity, store: Store) -> None:
        self.path = path
        self.identity = identity
        self.store = store

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    @staticmethod
    def is_initialised(path: Path) -> bool:
        return (path / KEY_FILE).exists()

    @staticmethod
    def key_needs_passphrase(path: Path) -> bool:
        try:
            return key_file_is_encrypted((path / KEY_FILE).read_bytes())
        except OSError as exc:
            raise KeyFileError(f"cannot read {path / KEY_FILE}: {exc.strerror}") from None

    @classmethod
    async def create(
        cls, path: Path, name: str, passphrase: bytes | None, *, network_key: bytes | None = None
    ) -> Local:
        if cls.is_initialised(path):
            raise CanopyError(f"{path} already holds a Canopy identity")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
        material = KeyMaterial(seed=random(32), storage_key=random(32))
        sealed = seal_key_file(material, passphrase, random)
        key_path = path / KEY_FILE
        tmp = key_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(sealed)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, key_path)
        local = await cls._open_material(path, material)
        await local.store.set_setting("name", name.encode("utf-8"))
        await local.store.set_setting("network_key", network_key or random(32))
        await local._adopt_networks(now_ms())
        return local

    @classmethod
    async def open(cls, path: Path, passphrase: bytes | None) -> Local:
        key_path = path / KEY_FILE
        if not key_path.exists():
            raise NotInitialised(f"no Canopy identity in {path}; run: canopy init")
        _check_private(path)
        _check_private(key_path)
        material = open_key_file(key_path.read_bytes(), passphrase)
        return await cls._open_material(path, material)

    @classmethod
    async def _open_material(cls, path: Path, material: KeyMaterial) -> Local:
        db_path = path / DB_FILE
        new_db = not db_path.exists()
        identity = Identity(material.seed)
        store = await Store.open(db_path, material.storage_key, owner=identity.node_id.raw)
        if new_db:
            for suffix in ("", "-wal", "-shm"):
                candidate = Path(str(db_path) + suffix)
                if candidate.exists():
                    os.chmod(candidate, 0o600)
        local = cls(path, identity, store)
        if not new_db:
            await local._adopt_networks()
        return local

    async def _adopt_networks(self, joined: int = 0) -> None:
        """A store from before several networks (schema < 10) held one network key as a
        setting: it becomes the first row of `networks`, named FIRST_NETWORK_NAME, and every
        peer trusted then becomes a member of it. Idempotent: nothing to do once a row exists."""
        if await self.store.rows("networks"):
            return
        key = await self.store.get_setting("network_key")
        if key is None or len(key) != 32:
            return  # a store being created: `create` writes both
        network = Network(FIRST_NETWORK_NAME, key, joined)
        await self.store.put_row("networks", key, network.to_value())
        for peer in (await self.peers()).values():
            if peer.join(network.tag):
                await self.save_peer(peer)

    async def close(self) -> None:
        await self.store.close()

    # -- settings --------------------------------------------------------------------------

    async def name(self) -> str:
        raw = await self.store.get_setting("name")
        return raw.decode("utf-8", "replace") if raw else ""

    async def network_key(self) -> bytes:
        key = await self.store.get_setting("network_key")
        if key is None or len(key) != 32:
            raise StoreError("the network key is missing from the store")
        return key

    async def set_network_key(self, key: bytes, name: str | None = None) -> None:
        """Replace the first network's key (a node alone in its own network joining another)."""
        first = (await self.networks())[0]
        await self.store.delete_row("networks", first.key)
        await self.store.put_row(
            "networks", key, Network(name or first.name, key, now_ms()).to_value()
        )
        await self.store.set_setting("network_key", key)
        await self._keys_changed()

    async def _keys_changed(self) -> None:
        await self.store.forget_opened()  # what it opened (or could not) may differ now
        await self.store.bump_epoch()  # a running node must switch keys at once

    # -- networks ----------------------------------------------------------------------------

    async def networks(self) -> list[Network]:
        """Every network this node belongs to: the first (primary) one, then by join time."""
        primary = await self.network_key()
        found: list[Network] = []
        for key, value in (await self.store.rows("networks")).items():
            name, joined = value.get("name"), value.get("joined")
            if len(key) != 32 or not isinstance(name, str):
                raise StoreError("a network row in the store is damaged")
            found.append(Network(name, key, joined if isinstance(joined, int) else 0))
        found.sort(key=lambda n: (n.key != primary, n.joined, n.name))
        if not found or found[0].key != primary:
            raise StoreError("the first network is missing from the store")
        return found

    async def network_keys(self) -> list[bytes]:
        """The keys of every network, the first network's first (what opening records tries)."""
        return [n.key for n in await self.networks()]

    async def add_network(self, name: str, key: bytes, joined: int) -> Network:
        networks = await self.networks()
        if any(n.key == key for n in networks):
            raise CanopyError("this node already belongs to that network")
        if any(n.name == name for n in networks):
            raise CanopyError(f"a network is already called {name!r}; choose another name")
        network = Network(name, key, joined)
        await self.store.put_row("networks", key, network.to_value())
        await self._keys_changed()
        return network

    async def network_named(self, name: str) -> Network:
        networks = await self.networks()
        for network in networks:
            if network.name == name:
                return network
        names = ", ".join(n.name for n in networks)
        raise CanopyError(f"this node belongs to no network called {name!r} (it is in: {names})")

    async def leave_network(self, name: str) -> Network:
        """Leave a network: its key, its pending invites and every peer's membership of it
        go. The last network cannot be left; leaving the first makes the next one first."""
        networks = await self.networks()
        network = await self.network_named(name)
        if len(networks) == 1:
            raise CanopyError(f"{name!r} is this node's only network; it cannot be left")
        if network.key == networks[0].key:
            await self.store.set_setting("network_key", networks[1].key)
        await self.store.delete_row("networks", network.key)
        tag = network.tag
        for peer in (await self.peers()).values():
            if tag in peer.networks:
                peer.networks.remove(tag)
                await self.save_peer(peer)
        for secret, value in (await self.store.rows("invites")).items():
            if value.get("network") == tag:
                await self.store.delete_row("invites", secret)
        await self._keys_changed()
        return network

    # -- peers -------------------------------------------------------------------------------

    async def peers(self) -> dict[NodeId, Peer]:
        rows = await self.store.rows("peers")
        return {NodeId(raw): Peer.from_value(raw, value) for raw, value in rows.items()}

    async def save_peer(self, peer: Peer) -> None:
        await self.store.put_row("peers", peer.node_id.raw, peer.to_value())

    async def remove_peer(self, node_id: NodeId) -> bool:
        return await self.store.delete_row("peers", node_id.raw)

    # -- runtime file: how the CLI finds a running node ----------------------------------------

    def write_runtime(self, api_url: str, token: str) -> None:
        """Write node.json whole (a reader never sees half of it); the process that runs
        the node holds the data directory's RunLock, so no other node writes it."""
        path = self.path / RUNTIME_FILE
        tmp = path.with_name(f".{RUNTIME_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"api": api_url, "token": token, "pid": os.getpid()}, handle)
        os.replace(tmp, path)
        self._runtime_token = token

    def clear_runtime(self) -> None:
        """Remove node.json if this process wrote it (same pid and token), never another's."""
        token = getattr(self, "_runtime_token", None)
        path = self.path / RUNTIME_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("pid") == os.getpid() and data.get("token") == token:
            path.unlink(missing_ok=True)


class RunLock:
    """One node per data directory: an exclusive flock on DATA/node.lock, held for the life
    of the `canopy run` process (the kernel drops it when the process ends, however it
    ends). The file holds the holder's pid, for `wipe`. Take it before anything is written."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path) -> RunLock:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = lock_holder(path)
            who = f" (pid {pid})" if pid else ""
            raise AlreadyRunning(
                f"a Canopy node{who} is already running on {path}; stop it first"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def lock_is_held(path: Path) -> bool:
    """Whether some process holds the data directory's RunLock (a node is running)."""
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # a probe that got the lock gives it back at once
    return False


def lock_holder(path: Path) -> int | None:
    """The pid the lock holder wrote into DATA/node.lock, if a node holds it."""
    if not lock_is_held(path):
        return None
    try:
        text = (path / LOCK_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def read_runtime(path: Path) -> dict[str, str] | None:
    """The running node's API address and token, if a node seems to be running."""
    try:
        data = json.loads((path / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not {"api", "token", "pid"} <= data.keys():
        return None
    try:
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError):
        return None
    return {"api": str(data["api"]), "token": str(data["token"])}
