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
# Guide content (docs/spec/30-sync.md, "Content"); checked whenever a guide is opened.
MAX_GUIDE_TITLE_BYTES = 1024
MAX_GUIDE_TEXT_BYTES = MAX_RECORD_BYTES // 2 - 16_384  # room left for envelope and padding
MAX_GUIDE_FIELD_BYTES = 256  # lang, region, format, filename, and each topic
MAX_GUIDE_TOPICS = 32
# Attachments (docs/spec/85-attachments.md): chunk records, and the manifest in a guide.
ATTACHMENT_CHUNK_BYTES = 262_144  # plaintext of one chunk record (256 KiB), the last shorter
MAX_ATTACHMENT_BYTES = 1_073_741_824  # one attachment (1 GiB)
MAX_ATTACHMENT_CHUNKS = MAX_ATTACHMENT_BYTES // ATTACHMENT_CHUNK_BYTES  # chunks of one
MAX_GUIDE_ATTACHMENTS = 64  # attachments of one guide
MAX_GUIDE_ATTACHMENT_CHUNKS = 8192  # chunk ids in one guide's manifest, in all (256 KiB)
MAX_ATTACHMENT_NAME_BYTES = 255  # a file name, as in most file systems
MAX_WITHDRAW_TAGS = MAX_GUIDE_ATTACHMENTS  # attachment tags one tombstone purges
MAX_STRIP_BYTES = 67_108_864  # an image or PDF whose metadata is stripped in memory (64 MiB)
DEFAULT_ALERT_LIFETIME_MS = 7 * 24 * 3600 * 1000
# Checklist content (docs/spec/30-sync.md, "Content"); title, lang and topics as a guide's.
MAX_CHECKLIST_ITEMS = 200  # items of one checklist
MAX_CHECKLIST_ITEM_BYTES = 1024  # UTF-8 text of one item
MAX_CHECKLIST_REVIEW_DAYS = 3650  # the longest review interval a checklist may ask for
DEFAULT_CHECKLIST_REVIEW_DAYS = 180  # a checklist's review interval when it names none
CHECKLIST_ITEM_ID_BYTES = 6  # an item's id: this many bytes of a hash of its text
MAX_CHECKLIST_FILE_BYTES = 262_144  # a checklist file given to `canopy publish checklist`

# Check-ins watched by a circle (protocol/checkin.py, docs/spec/90-rapid-response.md).
MIN_CHECKIN_EVERY_MS = 1000  # the shortest check-in interval a plan may set
MAX_CHECKIN_EVERY_MS = 90 * 24 * 3600 * 1000  # and the longest (also the longest grace, pause)
MAX_CHECKIN_MESSAGE_BYTES = 2048  # a plan's escalation message (it becomes an alert's text)
MAX_CHECKIN_AUDIENCE_BYTES = 4096  # a plan's escalation audience, as `--to` writes it
MAX_CHECKIN_MARK_SLOTS = 128  # responders one check-in's duress mark is sealed to
OWED_ESCALATION_GRACE_MS = 10_000  # an owed escalation waits this long after the last report
CHECKIN_MARK_SLOT_BYTES = 64  # one responder's slot: a sealed box of 16 bytes
MAX_CHECKIN_SEQ = 2**32 - 1  # one author's records about one plan
DEFAULT_CHECKIN_CONFIRMATIONS = 2  # members reporting "unreachable" before it escalates
CHECKIN_PLAN_ID_BYTES = 16  # a plan's random id
CHECKIN_LIFETIME_MS = 400 * 24 * 3600 * 1000  # how long a plan's records live (then re-plan)

# Set reconciliation (docs/spec/35-reconcile.md).
MAX_RECONCILE_MESSAGE_BYTES = 262_144  # one encoded reconciliation message (256 KiB)
MIN_RECONCILE_MESSAGE_BYTES = 2048  # smallest frame limit that still guarantees progress
MAX_RECONCILE_RANGES = 16_384  # ranges in one reconciliation message
RECONCILE_BRANCHING = 4  # sub-ranges a mismatching range is split into (tuned: see the SPEC)
RECONCILE_IDLIST_THRESHOLD = 2 * RECONCILE_BRANCHING  # responder: fewer items -> send the ids
# The sync conversation's responder answers ranges below this with their ids: a small
# difference (a restart, a reset link) then costs one reconciliation round trip, not two.
SYNC_IDLIST_THRESHOLD = 16
RECONCILE_INITIATOR_IDLIST_THRESHOLD = 2  # initiator: its ids are echoed back, so split longer
MAX_RECONCILE_BRANCHING = 16  # local tuning may not exceed these: MIN_..._BYTES relies on them
MAX_RECONCILE_IDLIST_THRESHOLD = 32
MAX_RECONCILE_ROUNDS = 64  # initiator messages in one round before the peer is cut off
# Serving, owned by protocol/conversation.py (docs/spec/30-sync.md); its round bounds are
# MIN_ROUND_INTERVAL_S .. MAX_ROUND_BYTES below, shared with the node's round rules.
MAX_SERVE_REQUESTED = 4 * MAX_WANT_OUTSTANDING  # ids a peer may have asked of us, unanswered
SERVE_CHUNK_IDS = 256  # ids looked up and sent per Records message: the peer starts early
WANT_TIMEOUT_S = 30.0  # an id asked and unanswered this long may be fetched from another peer
WANT_HEDGE_S = 2.0  # asked this long ago, and the peer answered no want since: ask a second holder

# Revocation certificates (docs/spec/60-revocation-and-defences.md).
MAX_REVOCATION_PAYLOAD_BYTES = 256  # the certificate inside a `revocation` record
MAX_REVOCATION_TEXT_LEN = 4096  # the text form handed to operators (REVOCATION_PREFIX + base64)

# Per-connection quotas: token buckets refilled continuously (docs/spec/60-...).
PEER_BYTES_PER_S = 16 * 1024 * 1024  # WebSocket bytes read from one peer; over it, reads wait
PEER_BYTES_BURST = 32 * 1024 * 1024
PEER_MESSAGES_PER_S = 2000  # sync messages from one peer; over it, reads wait
PEER_MESSAGES_BURST = 8000
PEER_QUERIES_PER_S = 100  # Want and Reconcile messages from one peer; over it, cut off
PEER_QUERIES_BURST = 500
PEER_PUSH_RECORDS_PER_S = 500  # records nobody asked for (outside a peer's own round); over: cut
PEER_PUSH_RECORDS_BURST = 5000
EAGER_PUSH_PEERS = 3  # peers a record goes whole to even over pruned links (the rest: Have)
EAGER_PUSH_HUB_PEERS = 16  # a node pushing to more peers than this sends every one whole
PUSH_FRESH_MS = 20_000  # a record created longer ago than this is pushed by id (Have) only
# Reconciliation rounds a peer starts with us (docs/spec/60-...).
MIN_ROUND_INTERVAL_S = 1.0  # an initiator starts a round at most this often with one peer
MIN_ROUND_GAP_S = 0.5  # responder: a round opened sooner than this after the last is refused
MAX_ROUND_SECONDS = 600.0  # after this, a round's unasked records count as pushes
MAX_ROUND_RECORDS = 10_000  # records the initiator may send unasked in one round
MAX_ROUND_BYTES = 268_435_456  # their encoded bytes (256 MiB); over either bound: cut off
SYNC_WRITE_INTERVAL_S = 30.0  # a peer's last_sync is written to the store at most this often
# Storage one peer can make us hold (docs/spec/60-...): past a cap, records are refused.
MAX_SOURCE_RECORDS = 200_000  # records stored from one peer since the node started
MAX_SOURCE_BYTES = 1_073_741_824  # their encoded bytes (1 GiB)
MAX_UNKNOWN_AUTHOR_RECORDS = 1000  # stored records of an author neither us nor a trusted peer
MAX_UNKNOWN_AUTHOR_BYTES = 16_777_216  # their encoded bytes (16 MiB), attachment chunks apart
MAX_UNKNOWN_AUTHOR_CHUNKS = MAX_ATTACHMENT_CHUNKS  # chunk records of such an author: one largest
MAX_UNKNOWN_AUTHOR_CHUNK_BYTES = MAX_ATTACHMENT_BYTES + MAX_ATTACHMENT_CHUNKS * 1024  # attachment
WARNING_INTERVAL_S = 10.0  # at most one warning line per peer per interval (others counted)

# Connections and caches (docs/spec/60-...).
MAX_PENDING_HANDSHAKES = 64  # inbound connections not yet authenticated, in all
MAX_PENDING_PER_ADDRESS = 8  # of those, from one remote address
MAX_INBOUND_CONNECTIONS = 512  # inbound WebSocket connections of any state, in all
MAX_INBOUND_PER_ADDRESS = 64  # of those, from one remote address
MAX_HANDSHAKE_MESSAGE_BYTES = 112  # largest SHS1 message (msg3): bigger, before auth, refused
PREAUTH_BYTES = 4096  # bytes a peer connection may send after its headers, before auth
HTTP_HEADER_TIMEOUT_S = 10.0  # a connection must finish its request headers this quickly
MAX_TCP_CONNECTIONS = 1024  # open TCP connections to the peer endpoint, before HTTP parsing
MAX_TCP_PER_ADDRESS = 80  # of those, from one address (trusted proxies exempt)
MAX_API_CONNECTIONS = 64  # open TCP connections to the local API
FD_RESERVE = 64  # file descriptors kept free of inbound connections (store, dials, API)
ACCEPT_ERROR_LOG_INTERVAL_S = 10.0  # "accept() out of system resource": one line per interval
NEGATIVE_CACHE_SIZE = 8192  # ids of records that failed decoding or verification (LRU)
# Sneakernet bundles and backups (docs/spec/50-bundles.md).
MAX_BUNDLE_BYTES = 268_435_456  # a whole bundle file (256 MiB): it is opened in memory
MAX_BUNDLE_RECORDS = 100_000  # records in one bundle
MAX_BACKUP_BYTES = 2_147_483_648  # a whole backup file (2 GiB)
# Know-who: contacts, vouches and queries (docs/spec/70-contacts-and-queries.md).
MAX_CONTACT_FIELD_BYTES = 256  # a name, a channel value, a specialty
MAX_CONTACT_NOTES_BYTES = 2048
MAX_CONTACT_LANGS = 8
MAX_CONTACT_CHANNELS = 8
MAX_CONTACT_SPECIALTIES = 8
MAX_CONTACT_LIST = 8  # any list inside a contact's content
MAX_IMPORT_FILE_BYTES = 67_108_864  # one HSDS JSON file or CSV table to import (64 MiB)
MAX_IMPORT_RECORDS = 50_000  # services (or organisations) in one HSDS import
DEFAULT_REVIEW_DAYS = 180  # a contact is due for re-verification this long after it is vouched
MAX_REVIEW_DAYS = 730
REVIEW_SOON_DAYS = 14  # `canopy review` also lists contacts due within this many days
DEFAULT_CONTACT_LIFETIME_MS = 3 * 365 * 24 * 3600 * 1000
MAX_QUERY_TEXT_BYTES = 200
QUERY_ID_BYTES = 16
DEFAULT_QUERY_DEPTH = 2  # a network query reaches peers and their peers
MAX_QUERY_DEPTH = 3
MAX_QUERIES_PER_PEER_PER_MINUTE = 30  # beyond this a peer's queries are refused and penalised
MAX_FORWARDED_QUERIES_PER_PEER_PER_MINUTE = 20  # of those, at depth > 1 (we forward them)
OWN_QUERY_RESERVE = 5  # of each peer's per-minute allowances, what only our own queries use
MAX_QUERIES_IN_FLIGHT = 8  # unanswered queries one peer may have open with us
QUERY_ALLOWANCE_WINDOW_MS = 65_000  # a sender keeps to the per-minute limit over this window
QUERY_FORWARD_TIMEOUT_MS = 1500  # how long a forwarding node waits for its own peers
QUERY_TIMEOUT_MS = 4000  # how long the asker waits for its peers' answers
MAX_ANSWER_RECORDS = 64  # records in one Answer
MAX_ANSWER_BYTES = 262_144  # encoded records in one Answer (256 KiB)
MAX_LOCAL_RESULTS = 200  # results a local query returns at most
DEFAULT_RESULTS = 20
MAX_INTRO_NOTE_BYTES = 512
MAX_INTRO_HOPS = 2  # an introduction request is forwarded at most this far towards its broker
MAX_INTROS_PER_PEER_PER_MINUTE = 10
MAX_INTROS_OPEN = 64  # introduction requests one peer may have waiting for our decision

# Node resources: how much one node buffers, batches and remembers (docs/spec/00-conventions.md,
# "Node resources"). Local choices, not on the wire: changing one changes no byte a peer sees.
WS_CHUNK = 65536  # box-stream bytes per WebSocket message: well under proxy limits
OFFLOAD_CRYPTO_BYTES = 65536  # box-stream bytes encoded or decoded on a worker thread, at least
ENCODE_PIECE_BYTES = 256 * BOXSTREAM_MAX_BODY  # plaintext box-stream encodes at once (1 MiB)
SERVE_BACKLOG = 8 * 1024 * 1024  # queued plaintext before we stop reading more records to send
ATTACHMENT_STORE_BATCH = 16  # chunk records an author's node stores per transaction (4 MiB)
SERVE_LOOKUP_BYTES = 8 * 1024 * 1024  # record bytes read for one LookUp (the rest: the next)
PUSH_DROP_BACKLOG = 64 * 1024 * 1024  # past this, pushes are dropped; the next resync repairs
INGEST_QUEUE = 8  # received Records messages waiting for verification and storage
INGEST_COALESCE = 4096  # records verified, then stored, as one batch at most
PARALLEL_VERIFY_OVER = 16  # batches larger than this are verified on worker threads
PARALLEL_VERIFY_BYTES = 262_144  # ... and batches of more bytes than this (attachment chunks)
GUIDE_CHECK_CHUNK = 256  # guides opened per trip to a worker thread after they are stored
GUIDE_CHECK_IDLE_S = 0.5  # while records are being ingested, guide checks wait this long
BUNDLE_CHUNK = 500  # bundle records checked and stored per transaction (and per progress step)
INDEX_BUILD_SLICE = 64  # records the index build opens between two turns of the event loop
OPENED_REPAIR_CHUNK = 512  # records whose cached opening was spoilt, fetched per store read
OPENED_WRITE_CHUNK = 8192  # cached openings the index build writes per transaction
LIBRARY_IMPORT_BATCH = 16  # paths (all their languages) `publish library` commits at once
STORE_DEFER_RECORDS = 4096  # records a store batch gathers before writing them
STORE_DEFER_BYTES = 8 << 20  # bytes of records a store batch gathers before writing them
GUIDE_WORDS_CHECK_COST = 16  # a prefix is checked in guides' own words past this ratio
VOCAB_INSERT_MOST = 32  # new index words inserted one by one; more: merged by one sort
GUIDE_SET_PATH_MAX = 1024  # guide search: candidates filtered as sets up to this many, else bitsets
GUIDE_BITS_MAX_SETS = 64  # ... a prefix of more words than this is checked in guides' own words
GUIDE_BITS_MIN_POSTINGS = 256  # ... bitsets of posting sets this large are kept made
GUIDE_BITS_CACHE_BYTES = 64 << 20  # ... in all at most this many bytes of them
LOCAL_API_MAX_HEAD_BYTES = 64 * 1024  # a local API answer's status line and headers
RANKING_WALK_COST_RATIO = 10  # a query walks the ranking when scoring matches costs more
RANKING_REFRESH_MS = 24 * 3600 * 1000  # a ranking's bounds are recomputed this often
RANKING_MAX_EXTRA = 1024  # entries added since the ranking was built, before it is rebuilt
RECENT_ALERTS = 1000  # alerts kept in memory for the local API
RECENT_QUERIES = 200  # received queries kept in memory for `GET /v1/queries`
# Peer scores and bans (docs/spec/30-sync.md, "Penalties and bans").
INITIAL_SCORE = 100  # a peer's score on connecting; penalties subtract from it
BAN_SECONDS = 300.0  # a peer whose score reaches 0 is refused this long
PURGE_EVERY_S = 5.0  # expired records and queries are purged at most this often
EXPIRY_HEAP_SLACK = 1024  # stale items the know-who expiry heap holds before it is rebuilt
# `canopy wipe` ending a running node.
WIPE_STOP_WAIT_S = 0.4  # how long a running node gets to leave by itself before SIGKILL
WIPE_KILL_WAIT_S = 2.0  # how long the kernel gets to end it after SIGKILL and drop its lock
# The web app (node/web/), served on the local API listener.
UI_LINK_TTL_S = 300  # a sign-in link printed by `canopy ui` works once, within this long
UI_MAX_LINKS = 16  # sign-in links not yet used; the oldest is dropped past this
UI_SESSION_IDLE_S = 1800  # a session unused this long is over
UI_SESSION_MAX_S = 12 * 3600  # and any session ends this long after sign-in
UI_MAX_SESSIONS = 32  # sessions kept in memory; the least recently used ends past this
UI_MAX_FORM_BYTES = MAX_GUIDE_TEXT_BYTES + 65_536  # one form post, a whole guide included
UI_GUIDES_PER_PAGE = 50  # guides one page of the web app's guide list shows
UI_RECENT_ALERTS = 20  # alerts the home page and the feed show
UI_GUIDE_PAGES_KEPT = 64  # guide-list pages (filters, page number) the web app keeps made
UI_FORMATS_KEPT = 4096  # dates and numbers each locale keeps written (a few hundred KB)
UI_FEED_KEEPALIVE_S = 15  # an idle live feed sends a comment this often (notices gone clients)

# Staff of a community server (node/web/staff.py): named users, each enrolled by a link.
UI_ENROL_TTL_S = 24 * 3600  # an enrolment link of `canopy ui user add` works once, this long
UI_MAX_STAFF = 200  # named staff users one node keeps
UI_STAFF_NAME_MAX_CHARS = 64  # a staff user name (letters, digits, . _ -)
UI_PASSWORD_MIN_CHARS = 12  # a staff password, at least
UI_PASSWORD_MAX_CHARS = 256  # and at most (Argon2id hashes it whole)
UI_SIGNIN_FAILURES = 5  # failed sign-ins (per user name, per client address) before a lockout
UI_LOCKOUT_BASE_S = 30  # the first lockout; each further failure while counted doubles it
UI_LOCKOUT_MAX_S = 3600  # the longest lockout
UI_MAX_TRACKED_CLIENTS = 4096  # names and addresses whose failures are remembered (oldest dropped)
UI_LINK_ATTEMPTS_PER_MIN = 20  # one-time and enrolment link tries per client address per minute
UI_TOTP_STEP_S = 30  # a staff TOTP code's time step (RFC 6238); one step either side accepted

# Circles (protocol/circle.py, docs/spec/80-circles.md).
MAX_CIRCLE_NAME_BYTES = 128  # a circle's name, as its members see it
MAX_CIRCLE_MEMBERS = 512  # a membership record is sealed to every member: within the slots
MAX_CIRCLE_EPOCHS = 4096  # keys one membership record may carry (one per epoch, 36 bytes)
MAX_CIRCLE_SEQ = 2**32 - 1  # membership changes of one circle
MAX_CIRCLE_KEYS_TRIED = 4096  # circle keys a node tries on one sealed payload
RECENT_OPENERS = 3  # ways (slot, network, circle key) a KeyRing tries first: the latest that opened
X25519_SLOT_TRIALS = 30  # failed slot trials that cost one X25519 (a key derivation: ~2 trials)
assert MAX_CIRCLE_MEMBERS < MAX_RECIPIENT_SLOTS

# Several networks per node (docs/spec/45-networks.md): each one costs an HMAC on every
# inbound handshake's first message and a slot trial on every record opened.
MAX_NETWORKS = 16
# Help requests and acknowledged alerts (protocol/help.py, docs/spec/92-help-requests.md).
MAX_HELP_TEXT_BYTES = 4096  # a help request's text
MAX_HELP_OUTCOME_BYTES = 1024  # a resolution's outcome
DEFAULT_HELP_TARGET_MS = 2 * 3600 * 1000  # first-response target when the circle sets none
MAX_HELP_TARGET_MS = 30 * 24 * 3600 * 1000  # the longest first-response target
DEFAULT_HELP_LIFETIME_MS = 90 * 24 * 3600 * 1000  # a help record's lifetime
MAX_HELP_STEPS = 1000  # steps folded per request (the first in fold order; the rest ignored)
MAX_HELP_SHOWN = 500  # open requests `help list` shows
MAX_ACKED_ALERTS_KEPT = 200  # alerts of ours whose recipients are kept to show who acknowledged
# On call, off duty and a circle's first-response target (protocol/oncall.py,
# docs/spec/94-duty.md): `duty` records sealed to a circle.
DUTY_SLOT_BYTES = 16  # an on-call shift's random id
MAX_DUTY_SEQ = 2**32 - 1  # one author's duty records about one circle
MAX_ONCALL_SHIFTS = 256  # live shifts one circle's rota holds (the earliest kept)
MAX_ONCALL_SHIFT_MS = 31 * 24 * 3600 * 1000  # the longest one shift
MAX_DUTY_CLEARS = 256  # shifts one `clear` record names
MAX_AWAY_MS = 366 * 24 * 3600 * 1000  # the longest `canopy away --until` ahead of now
DUTY_LIFETIME_MS = 400 * 24 * 3600 * 1000  # how long a duty record lives
MAX_NOTICES_KEPT = 1000  # raised notices a node keeps (sealed table `notices`), newest kept
