"""The one exception hierarchy of Canopy.

The CLI catches only `CanopyError`. A `RemoteProtocolError` is the peer's fault and
carries a penalty hint; it must never take a node down. Messages never contain key
material or plaintext.
"""

from __future__ import annotations


class CanopyError(Exception):
    """Base of every error Canopy raises on purpose."""


class LocalProtocolError(CanopyError):
    """We misused an API or a state machine: a bug on our side."""


class RemoteProtocolError(CanopyError, ValueError):
    """The peer's bytes were bad. `penalty` is how much this costs the sender's score."""

    penalty: int = 10


class DecodeError(RemoteProtocolError):
    """Malformed, non-canonical or oversize bytes."""

    penalty = 20


class VerificationError(RemoteProtocolError):
    """A signature or MAC did not verify. Deliberately says nothing about which check failed."""

    penalty = 50


class HandshakeError(RemoteProtocolError):
    """Wrong network key, untrusted peer or a failed handshake check."""

    penalty = 50


class UnexpectedMessage(RemoteProtocolError):
    """A well-formed message that is not allowed in the current state."""

    penalty = 20


class QuotaExceeded(UnexpectedMessage):
    """More queries, or more records nobody asked for, than the peer's quota allows."""

    penalty = 50


class RecordRejected(RemoteProtocolError):
    """A valid record we refuse to store: expired, future-dated, withdrawn, revoked author."""

    penalty = 5


class RateLimited(RemoteProtocolError):
    """The peer asks more often than the limits allow (queries, introductions)."""

    penalty = 5


class NotForUs(CanopyError):
    """A sealed payload has no recipient slot that opens with our keys (normal for a relay)."""


class InviteError(CanopyError, ValueError):
    """An invite code that is malformed, forged, expired or already used."""


class ContactError(CanopyError, ValueError):
    """A contact field a person typed is not valid; the message says which and why."""


class ImportFormatError(CanopyError):
    """A directory file to import (HSDS JSON or CSV package) that cannot be read as one."""


class KeyFileError(CanopyError):
    """The key file is missing, damaged, or the passphrase is wrong."""


class ConfigError(CanopyError):
    """A configuration error; the message names the file, line and key."""


class StoreError(CanopyError):
    """The database cannot be read, or a migration failed."""


# The data directory and the files a person hands the CLI (raised in node/, defined here so
# that the whole hierarchy reads in one place).


class NotInitialised(CanopyError):
    """The data directory has no identity yet."""


class AlreadyRunning(CanopyError):
    """Another `canopy run` holds the data directory's lock."""


class WipeIncomplete(CanopyError):
    """The keys are destroyed on disk, but the running node could not be ended."""


class BackupError(CanopyError):
    """A backup cannot be written, or cannot be restored; the message names the file."""


class BundleError(CanopyError):
    """A bundle cannot be written, or is refused; the message names the file."""


class NodeNotRunning(CanopyError):
    """No node runs on this data directory, and the command needs one."""


class NodeRefused(CanopyError):
    """The running node refused the request; the message is its reason."""


class NodeLost(CanopyError):
    """The connection to the running node broke mid-answer."""


class UsageError(CanopyError):
    """A command line the CLI cannot run: a bad flag or value (exit code 2)."""


class StaffError(CanopyError):
    """A staff user of the web app cannot be added, enrolled or removed as asked."""
