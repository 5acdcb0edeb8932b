"""Versioned schema migrations, applied in order; PRAGMA user_version is the version.

Never edit a migration that has shipped: append a new one. Nothing here stores plaintext:
`data` columns hold sealed bytes, `author_tag`/`tag` are keyed hashes. What needs the
storage key is done by SQL functions `migrate` registers on the connection first
(node/at_rest.py): `canopy_mark(id, local)` and `canopy_repad(sealed)`. A wrong storage key
is named as such, before anything is converted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable

import aiosqlite

from node.at_rest import AtRest, unpad
from protocol.errors import StoreError

_CANARY = b"canopy"
_WRONG_KEY = "the database does not belong to this key"

# The columns of `records` that every layout has, first in each (migrations 1 and 8).
_RECORDS_HEAD = """
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id BLOB NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        scope INTEGER NOT NULL,
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        author_tag BLOB NOT NULL,"""

# 7: the disk no longer says which records are ours. `local` (in clear) becomes `mark`:
#    a keyed tag of the id for records written here, random bytes for every other, placed
#    before `data` so the poll reads it without the record; `received_at` (which equalled
#    `created` for our own) goes; the `records_local` index goes with `local`. Sealed
#    settings and rows are sealed again padded to size buckets.
_AT_REST = f"""
    CREATE TABLE records_new ({_RECORDS_HEAD}
        mark BLOB NOT NULL,
        data BLOB NOT NULL,
        opened BLOB
    );
    INSERT INTO records_new (seq, id, kind, scope, created, expires, author_tag, mark, data, opened)
        SELECT seq, id, kind, scope, created, expires, author_tag, canopy_mark(id, local), data,
            opened
        FROM records ORDER BY seq;
    DELETE FROM sqlite_sequence WHERE name = 'records_new';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'records_new', seq FROM sqlite_sequence WHERE name = 'records';
    DROP TABLE records;
    ALTER TABLE records_new RENAME TO records;
    CREATE INDEX records_created ON records (created, id);
    CREATE INDEX records_expires ON records (expires);
    CREATE INDEX records_author ON records (author_tag);
    CREATE INDEX records_kind ON records (kind, created, id);
    UPDATE settings SET value = canopy_repad(value);
    UPDATE peers SET data = canopy_repad(data);
    UPDATE invites SET data = canopy_repad(data);
    UPDATE introductions SET data = canopy_repad(data);
    UPDATE revoked SET data = canopy_repad(data)
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: records, sealed settings, sealed peer/invite rows, counters.
    f"""
    CREATE TABLE records ({_RECORDS_HEAD}
        local INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX records_created ON records (created, id);
    CREATE INDEX records_expires ON records (expires);
    CREATE TABLE settings (name TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE peers (tag BLOB PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE invites (tag BLOB PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE rejections (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
    """,
    # 2: withdrawn record ids (from tombstones), so a late copy is refused until expiry;
    #    an index for the per-peer reconciliation set.
    """
    CREATE TABLE withdrawn (
        id BLOB PRIMARY KEY,
        author_tag BLOB NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE INDEX withdrawn_expires ON withdrawn (expires);
    CREATE INDEX records_author ON records (author_tag)
    """,
    # 3: introduction requests (sealed rows, like peers): who asked for which contact.
    """
    CREATE TABLE introductions (tag BLOB PRIMARY KEY, data BLOB NOT NULL)
    """,
    # 4: revoked identities (sealed rows, like peers), and which record went to which peer
    #    (keyed tags only) so `canopy exposure` can say who received a compromised node's records.
    """
    CREATE TABLE revoked (tag BLOB PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE deliveries (
        peer_tag BLOB NOT NULL,
        record_tag BLOB NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (peer_tag, record_tag)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_record ON deliveries (record_tag)
    """,
    # 5: indexes for reads the running node makes often: counts by kind (status, metrics)
    #    and all records of a kind in order (the know-who index at start) read the index
    #    alone; the poll for records written here by the CLI no longer scans the others.
    """
    CREATE INDEX records_kind ON records (kind, created, id);
    CREATE INDEX records_local ON records (seq) WHERE local = 1
    """,
    # 6: what the know-who index opened of each contact and vouch record, sealed like the
    #    record itself (Store.put_opened), so that a node starts without opening them again.
    """
    ALTER TABLE records ADD COLUMN opened BLOB
    """,
    # 7: withdrawn ids keyed by (id, author): only the author's own tombstone withdraws, and
    #    a tombstone by anyone else naming the same id, first or not, no longer takes the
    #    author's place. Existing rows keep their id, author and expiry.
    """
    CREATE TABLE withdrawn_by_author (
        id BLOB NOT NULL,
        author_tag BLOB NOT NULL,
        expires INTEGER NOT NULL,
        PRIMARY KEY (id, author_tag)
    ) WITHOUT ROWID;
    INSERT INTO withdrawn_by_author (id, author_tag, expires)
        SELECT id, author_tag, expires FROM withdrawn;
    DROP TABLE withdrawn;
    ALTER TABLE withdrawn_by_author RENAME TO withdrawn;
    CREATE INDEX withdrawn_expires ON withdrawn (expires)
    """,
    # 8: nothing in clear says which records are ours; sealed values padded (_AT_REST).
    _AT_REST,
    # 9: the web app's named staff (node/web/staff.py): a sealed row per user, keyed by a
    #    keyed tag of the name, so neither name, role, password hash nor TOTP secret is readable.
    """
    CREATE TABLE staff (tag BLOB PRIMARY KEY, data BLOB NOT NULL)
    """,
    # 10: this organisation's own progress through checklists (node/checklists.py): a sealed
    #     row per (author, lesson), keyed by a keyed tag; never sent to a peer or bundled.
    """
    CREATE TABLE checklist_progress (tag BLOB PRIMARY KEY, data BLOB NOT NULL)
    """,
    # 11: the networks this node belongs to (docs/spec/45-networks.md): a sealed row per
    #     network (name, key, joined), keyed by a keyed tag of the network key. The single
    #     network key of older stores becomes the first row when the store is next opened
    #     (node/local.py `Local._adopt_networks`: sealing needs the storage key). `net`: a
    #     keyed tag of the network tag a network-scoped record carries (NULL: none, which
    #     means this node's first network), so that sync picks a peer's records in SQL.
    """
    CREATE TABLE networks (tag BLOB PRIMARY KEY, data BLOB NOT NULL);
    ALTER TABLE records ADD COLUMN net BLOB;
    CREATE INDEX records_net ON records (net) WHERE net IS NOT NULL
    """,
    # 12: attachments (docs/spec/85-attachments.md). A chunk row's `group_tag` is a keyed tag
    #     of (author, attachment tag), so a tombstone purges an attachment's chunks without
    #     opening any record; `withdrawn_groups` refuses late chunks of a withdrawn one.
    """
    ALTER TABLE records ADD COLUMN group_tag BLOB;
    CREATE INDEX records_group ON records (group_tag) WHERE group_tag IS NOT NULL;
    CREATE TABLE withdrawn_groups (tag BLOB PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX withdrawn_groups_expires ON withdrawn_groups (expires)
    """,
    # 13: this node's own check-in plan (node/checkins.py): its id, circle and the keyed
    #     hash of a duress PIN, in one sealed row; never sent to a peer or bundled.
    """
    CREATE TABLE checkin_plans (tag BLOB PRIMARY KEY, data BLOB NOT NULL)
    """,
    # 14: `canopy publish library` (node/library_import.py): per (library folder, language,
    #     relative path) the record ids it published and a hash of what they were made from,
    #     so a re-run publishes only what changed; sealed rows, never sent or bundled.
    """
    CREATE TABLE library_imports (tag BLOB PRIMARY KEY, data BLOB NOT NULL)
    """,
    # 15: notices the running node raised (node/notices.py: missed, escalated and duress
    #     check-ins, help requests), so a restart neither raises them again nor forgets
    #     them; sealed rows, never sent or bundled.
    """
    CREATE TABLE notices (tag BLOB PRIMARY KEY, data BLOB NOT NULL)
    """,
)
# The first schema whose rows the current store code writes (older ones it only converts).
LAYOUT_SINCE = MIGRATIONS.index(_AT_REST) + 1


async def migrate(db: aiosqlite.Connection, at_rest: AtRest) -> bool:
    """Apply every migration newer than PRAGMA user_version, each in its own transaction
    (after checking the key, when there is an old store to convert); whether any ran."""
    await db.create_function("canopy_mark", 2, at_rest.mark_of)
    await db.create_function("canopy_repad", 1, at_rest.repad)
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the database is at schema {version}, newer than this Canopy ({len(MIGRATIONS)})"
        )
    if version == len(MIGRATIONS):
        return False
    if version > 0:
        await _check_key_before_migrating(db, at_rest)
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        try:
            await db.execute("BEGIN IMMEDIATE")
            for statement in script.split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            await db.execute("ROLLBACK")
            raise StoreError(f"migration {number} failed: {exc}") from exc
    return True


async def check_key(
    get_setting: Callable[[str], Awaitable[bytes | None]],
    set_setting: Callable[[str, bytes], Awaitable[None]],
) -> None:
    """A canary sealed with the storage key: a mismatched key file is caught at open."""
    canary = await get_setting("canary")
    if canary is None:
        await set_setting("canary", _CANARY)
    elif canary != _CANARY:
        raise StoreError(_WRONG_KEY)


async def _check_key_before_migrating(db: aiosqlite.Connection, at_rest: AtRest) -> None:
    """The canary of a store in any older layout (sealed, padded or not), so that a wrong
    key is named as such rather than as a failed migration. Writes nothing."""
    async with db.execute("SELECT value FROM settings WHERE name = 'canary'") as cur:
        row = await cur.fetchone()
    if row is not None:
        plain = at_rest.open_setting_raw(bytes(row[0]))
        if plain != _CANARY and unpad(plain) != _CANARY:
            raise StoreError(_WRONG_KEY)
