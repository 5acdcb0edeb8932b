"""Every bound Canopy enforces, as a named constant. docs/SPEC.md, "Limits", lists them."""

from __future__ import annotations

# Records.
MAX_RECORD_BYTES = 1_048_576  # a whole encoded record, signature included
MAX_DEPTH = 16  # nesting of arrays/maps in any decoded value
MAX_CLOCK_SKEW_MS = 10 * 60 * 1000  # a record may be dated at most this far in the future
MAX_LIFETIME_MS = 5 * 365 * 24 * 3600 * 1000  # expires - created
DEFAULT_GUIDE_LIFETIME_MS = 2 * 365 * 24 * 3600 * 1000
MAX_KIND_LEN = 32

# Sealed payloads.
MAX_RECIPIENT_SLOTS = 1024
MIN_RECIPIENT_SLOTS = 4  # slot counts are padded to a power of two, at least this
MIN_PAD_BUCKET = 256  # plaintext is padded to a power of two, at least this

# Box-stream (fixed by the published specification).
BOXSTREAM_MAX_BODY = 4096
BOXSTREAM_HEADER_BYTES = 34

# Application messages inside box-stream.
MAX_MESSAGE_BYTES = MAX_RECORD_BYTES + 4096
MAX_IDS_PER_MESSAGE = 2048
MAX_WANT_OUTSTANDING = 8192

# Invites.
MAX_INVITE_ADDRESSES = 8
MAX_ADDRESS_LEN = 512
MAX_NAME_LEN = 128
DEFAULT_INVITE_LIFETIME_MS = 7 * 24 * 3600 * 1000

# Identity and key file (docs/spec/10-identity-records.md).
SAFETY_CODE_GROUPS = 6  # groups of 5 decimal digits
KEY_FILE_OPSLIMIT = 2  # = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
KEY_FILE_MEMLIMIT = 67_108_864  # = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE (64 MiB)
KEY_FILE_MAX_OPSLIMIT = 4  # = OPSLIMIT_SENSITIVE: a key file asking for more is refused
KEY_FILE_MAX_MEMLIMIT = 1_073_741_824  # = MEMLIMIT_SENSITIVE (1 GiB)

# Records and sealed payloads (docs/spec/10-identity-records.md).
MAX_TIMESTAMP_MS = 2**63 - 1  # created/expires are unsigned ms since the Unix epoch, below this
SEALED_NONCE_BYTES = 24
SEALED_SLOT_BYTES = 48  # secretbox of a 32-byte content key: 16 MAC + 32
SEALED_LENGTH_BYTES = 4  # u32 true plaintext length at the start of the padded plaintext

# Invites.
MAX_INVITE_BYTES = 6144  # decoded msgpack of an invite code

# Lifecycle (tombstones).
MAX_WITHDRAW_TARGETS = 64
MAX_WITHDRAW_PAYLOAD_BYTES = 4096
RESYNC_INTERVAL_S = 60.0  # default: how often connected peers re-run reconciliation
MAX_ALERT_TEXT_BYTES = 4096
DEFAULT_ALERT_LIFETIME_MS = 7 * 24 * 3600 * 1000

# Set reconciliation (docs/spec/35-reconcile.md).
MAX_RECONCILE_MESSAGE_BYTES = 262_144  # one encoded reconciliation message (256 KiB)
MIN_RECONCILE_MESSAGE_BYTES = 2048  # smallest frame limit that still guarantees progress
MAX_RECONCILE_RANGES = 16_384  # ranges in one reconciliation message
RECONCILE_BRANCHING = 4  # sub-ranges a mismatching range is split into (tuned: see the SPEC)
RECONCILE_IDLIST_THRESHOLD = 2 * RECONCILE_BRANCHING  # responder: fewer items -> send the ids
RECONCILE_INITIATOR_IDLIST_THRESHOLD = 2  # initiator: its ids are echoed back, so split longer
MAX_RECONCILE_BRANCHING = 16  # local tuning may not exceed these: MIN_..._BYTES relies on them
MAX_RECONCILE_IDLIST_THRESHOLD = 32
MAX_RECONCILE_ROUNDS = 64  # initiator messages in one round before the peer is cut off

# Sneakernet bundles and backups (docs/spec/50-bundles.md).
MAX_BUNDLE_BYTES = 268_435_456  # a whole bundle file (256 MiB): it is opened in memory
MAX_BUNDLE_RECORDS = 100_000  # records in one bundle
MAX_BACKUP_BYTES = 2_147_483_648  # a whole backup file (2 GiB)
