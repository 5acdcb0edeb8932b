"""Versioned schema migrations, applied in order; PRAGMA user_version is the version.

Never edit a migration that has shipped: append a new one. Nothing here stores plaintext:
`data` columns hold sealed bytes, `author_tag`/`tag` are keyed hashes.
"""

from __future__ import annotations

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
)
