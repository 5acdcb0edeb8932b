"""Versioned schema migrations, applied in order; PRAGMA user_version is the version.

Never edit a migration that has shipped: append a new one. Nothing here stores plaintext:
`data` columns hold sealed bytes, `author_tag`/`tag` are keyed hashes. What needs the
storage key is done by SQL functions the store registers on its connection before it
migrates (node/store.py `_register_functions`): `canopy_mark(id, local)` and
`canopy_repad(sealed)`.
"""

from __future__ import annotations

# 7: the disk no longer says which records are ours. `local` (in clear) becomes `mark`:
#    a keyed tag of the id for records written here, random bytes for every other, placed
#    before `data` so the poll reads it without the record; `received_at` (which equalled
#    `created` for our own) goes; the `records_local` index goes with `local`. Sealed
#    settings and rows are sealed again padded to size buckets.
_AT_REST = """
    CREATE TABLE records_new (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id BLOB NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        scope INTEGER NOT NULL,
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        author_tag BLOB NOT NULL,
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
    """
    CREATE TABLE records (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id BLOB NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        scope INTEGER NOT NULL,
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        author_tag BLOB NOT NULL,
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
)
# The first schema whose rows the current store code writes (older ones it only converts).
LAYOUT_SINCE = MIGRATIONS.index(_AT_REST) + 1
