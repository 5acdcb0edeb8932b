"""Every domain-separation label, defined once. docs/SPEC.md lists them all.

A label is prepended to (or used as the BLAKE2b personalisation of) whatever is signed,
hashed or keyed, so that a signature or key made for one purpose is useless for another.
"""

from __future__ import annotations

# Signatures (Ed25519 over label || canonical bytes).
RECORD_SIGNATURE = b"canopy/record/v1"
BODY_SIGNATURE = b"canopy/body/v1"
INVITE_SIGNATURE = b"canopy/invite/v1"
REVOCATION_SIGNATURE = b"canopy/revocation/v1"

# BLAKE2b personalisations (exactly 16 bytes each, as BLAKE2b requires).
RECIPIENT_WRAP = b"canopy-wrap-dh-1"
NETWORK_WRAP = b"canopy-wrap-nk-1"
SAFETY_CODE = b"canopy-safety-v1"
INVITE_CAPABILITY = b"canopy-invcap-v1"
STORAGE_TAG = b"canopy-stortag-1"

# Key file.
KEY_FILE_MAGIC = b"canopy-keyfile-1"

# Human-facing prefixes.
INVITE_PREFIX = "canopy-invite:"
REVOCATION_PREFIX = "canopy-revocation:"

ALL_PERSONALISATIONS = (
    RECIPIENT_WRAP,
    NETWORK_WRAP,
    SAFETY_CODE,
    INVITE_CAPABILITY,
    STORAGE_TAG,
)
assert all(len(p) == 16 for p in ALL_PERSONALISATIONS)

# At-rest sub-keys, derived from the storage key (BLAKE2b personalisation, 16 bytes).
STORAGE_RECORDS = b"canopy-st-recs-1"
STORAGE_SETTINGS = b"canopy-st-sets-1"
STORAGE_ROWS = b"canopy-st-rows-1"
STORAGE_OPENED = b"canopy-st-open-1"  # what the index opened of a record (node/opened_cache.py)
assert all(len(p) == 16 for p in (STORAGE_RECORDS, STORAGE_SETTINGS, STORAGE_ROWS, STORAGE_OPENED))

# Sealed payloads: the body key is bound to the exact header and slots (docs/spec/10-...).
SEALED_BODY = b"canopy-sealbody1"
assert len(SEALED_BODY) == 16
# Circles (docs/spec/80-circles.md): the id bound to its owner, and the slot of an epoch key.
CIRCLE_ID = b"canopy-circle-id"
CIRCLE_WRAP = b"canopy-wrap-ck-1"
assert len(CIRCLE_ID) == 16 and len(CIRCLE_WRAP) == 16

# Several networks per node (docs/spec/45-networks.md): the cleartext tag naming a network.
NETWORK_TAG = b"canopy-net-tag-1"
assert len(NETWORK_TAG) == 16

# Set reconciliation: the fingerprint of a range (docs/spec/35-reconcile.md).
RECONCILE_FINGERPRINT = b"canopy-recon-fp1"
assert len(RECONCILE_FINGERPRINT) == 16

# At rest: which record went to which peer (for `canopy exposure`), as keyed tags.
STORAGE_DELIVERY = b"canopy-st-dlvr-1"
assert len(STORAGE_DELIVERY) == 16
# At rest: the keyed mark of a record authored here (random bytes on every other record).
STORAGE_MARK = b"canopy-st-mark-1"
assert len(STORAGE_MARK) == 16
# Sneakernet bundles and encrypted backups (docs/spec/50-bundles.md).
BUNDLE_MAGIC = b"canopy-bundle-v1"  # first 16 bytes of a bundle file
BUNDLE_KEY = b"canopy-bundlek-1"  # BLAKE2b personalisation of the bundle box key
BUNDLE_SIGNATURE = b"canopy/bundle/v1"
BACKUP_MAGIC = b"canopy-backup-v1"  # first 16 bytes of a backup file; also its KDF label
assert all(len(p) == 16 for p in (BUNDLE_MAGIC, BUNDLE_KEY, BACKUP_MAGIC))
# Checklists: an item's id is BLAKE2b of its text under this personalisation.
CHECKLIST_ITEM = b"canopy-chk-item1"
assert len(CHECKLIST_ITEM) == 16
# Know-who: an introduction request is signed by the node asking to be introduced.
INTRO_REQUEST_SIGNATURE = b"canopy/intro-request/v1"
# Attachments (docs/spec/85-attachments.md): the key of one chunk, from the attachment key.
ATTACHMENT_CHUNK = b"canopy-attchunk1"
assert len(ATTACHMENT_CHUNK) == 16
# Check-ins: the keyed hash of a duress PIN, kept only on the defender's node.
CHECKIN_PIN = b"canopy-chk-pin-1"
assert len(CHECKIN_PIN) == 16
