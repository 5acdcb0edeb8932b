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


class KeyFileError(CanopyError):
    """The key file is missing, damaged, or the passphrase is wrong."""


class ConfigError(CanopyError):
    """A configuration error; the message names the file, line and key."""


class StoreError(CanopyError):
    """The database cannot be read, or a migration failed."""


class UsageError(CanopyError):
    """A command line the CLI cannot run: a bad flag or value (exit code 2)."""
