"""Publishing a guide in a store-level test: one call with the defaults these tests share
(English, region KE, no topics), through the real `publish_guides`."""

from __future__ import annotations

from pathlib import Path

from node.content import publish_guides
from node.local import Local
from protocol.record import Record


async def publish_guide(
    local: Local,
    guide: Path,
    *,
    now_ms: int,
    to: str = "network",
    title: str | None = None,
    topics: tuple[str, ...] = (),
) -> Record:
    """Seal and store the guide in `guide` on `local`; the record made."""
    ((record, _),) = await publish_guides(
        local,
        [guide],
        title=title,
        lang="en",
        topics=list(topics),
        region="KE",
        to=to,
        now_ms=now_ms,
    )
    return record


def copy_key_file(source: Path, target: Path) -> bytes:
    """A new data directory `target` holding the key file of `source` (mode 0600, as
    `Local.create` leaves it); the key file's bytes."""
    target.mkdir(mode=0o700)
    key_file = (source / "identity.key").read_bytes()
    (target / "identity.key").write_bytes(key_file)
    (target / "identity.key").chmod(0o600)
    return key_file
