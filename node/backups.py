"""`canopy backup` and `canopy restore`: the key file plus a consistent database copy,
encrypted under a passphrase (protocol/backup.py, docs/spec/50-bundles.md "Backups").

Owns getting a consistent database image (the sqlite3 online-backup API into memory, so
it is safe while the node runs and leaves no temp file) and putting one back. Never
overwrites an identity unless asked to, and never while a node runs on the directory.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from node.local import (
    DB_FILE,
    KEY_FILE,
    RUNTIME_FILE,
    Local,
    RunLock,
    random,
    read_runtime,
    write_private,
)
from node.sealed_files import read_sealed_file
from protocol import limits
from protocol.backup import Backup, open_backup, seal_backup
from protocol.errors import AlreadyRunning, BackupError, CanopyError, DecodeError
from protocol.identity import key_file_is_encrypted


@dataclass(frozen=True, slots=True)
class Restored:
    node_id: str
    records: dict[str, int]
    created: int


def _snapshot(db_path: Path) -> bytes:
    """A transactionally consistent image of the database, taken page by page in memory."""
    source = sqlite3.connect(str(db_path), timeout=30.0)
    try:
        memory = sqlite3.connect(":memory:")
        try:
            source.backup(memory)
            return memory.serialize()
        finally:
            memory.close()
    finally:
        source.close()


async def make_backup(local: Local, out: Path, passphrase: bytes, now_ms: int) -> int:
    """Write an encrypted backup of `local` to the new file `out`; returns its size."""
    if out.exists():
        raise BackupError(f"{out} already exists; choose a new file name")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a directory")
    key_file = (local.path / KEY_FILE).read_bytes()
    image = await asyncio.to_thread(_snapshot, local.path / DB_FILE)
    backup = Backup(created=now_ms, key_file=key_file, database=image)
    sealed = await asyncio.to_thread(seal_backup, backup, passphrase, random)
    write_private(out, sealed, exclusive=True)
    return len(sealed)


async def restore_backup(path: Path, target: Path, passphrase: bytes, *, force: bool) -> Restored:
    """Recreate a data directory from a backup; refuse to replace an identity unless `force`."""
    data = read_sealed_file(
        path,
        limit=limits.MAX_BACKUP_BYTES,
        error=BackupError,
        kind="backup",
        too_large="not a backup (too large)",
    )
    try:
        backup = await asyncio.to_thread(open_backup, data, passphrase)
    except DecodeError as exc:
        raise BackupError(f"{path}: {exc}") from None
    running = f"a node is running on {target}; stop it before restoring"
    if read_runtime(target) is not None:
        raise BackupError(running)
    if Local.is_initialised(target) and not force:
        raise BackupError(
            f"{target} already holds a Canopy identity; restoring would replace it "
            "(add --force to do so)"
        )
    if target.exists() and not target.is_dir():
        raise BackupError(f"{target} is not a directory")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target, 0o700)
    # The run lock, not node.json, says whether a node runs there (node.json may be gone);
    # holding it meanwhile also keeps a node from starting on a half-restored directory.
    try:
        lock = RunLock.acquire(target)
    except AlreadyRunning:
        raise BackupError(running) from None
    try:
        return await _restore_into(path, target, backup, passphrase)
    finally:
        lock.release()


async def _restore_into(path: Path, target: Path, backup: Backup, passphrase: bytes) -> Restored:
    for name in (DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm", RUNTIME_FILE, KEY_FILE):
        (target / name).unlink(missing_ok=True)
    write_private(target / KEY_FILE, backup.key_file, exclusive=True)
    write_private(target / DB_FILE, backup.database, exclusive=True)
    try:
        needs = key_file_is_encrypted(backup.key_file)
        local = await Local.open(target, passphrase if needs else None)
    except CanopyError:
        for name in (DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm", KEY_FILE):
            (target / name).unlink(missing_ok=True)
        raise
    try:
        check = await local.store.integrity_check()
        if check != "ok":
            raise BackupError(f"{path}: the restored database fails its integrity check")
        counts = await local.store.count_by_kind()
        node_id = str(local.node_id)
    finally:
        await local.close()
    return Restored(node_id, counts, backup.created)
