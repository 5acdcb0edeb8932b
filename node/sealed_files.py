"""Reading a file a person names: a sealed one (a bundle to import, a backup to restore) or
a text one (a guide, a checklist to publish).

Owns the checks before the bytes reach protocol/: the file is bounded in size, and every
way reading it fails is one clear error of the caller's type (`BundleError`, `BackupError`,
`CanopyError`) naming the file. It never opens or parses what it reads.
"""

from __future__ import annotations

from pathlib import Path

from protocol.errors import CanopyError


def read_sealed_file(
    path: Path, *, limit: int, error: type[CanopyError], kind: str, too_large: str
) -> bytes:
    """The bytes of `path`, a `kind` ("bundle", "backup") of at most `limit` bytes; a larger
    file raises `error` with `too_large`, a directory or an unreadable file says so."""
    try:
        if path.stat().st_size > limit:
            raise error(f"{path}: {too_large}")
        return path.read_bytes()
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {kind}") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None


def read_text_file(path: Path, *, limit: int) -> str:
    """The UTF-8 text of `path`, at most `limit` bytes; CanopyError naming the file when it
    cannot be read, is larger or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CanopyError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise CanopyError(f"{path} is too large ({len(data)} bytes; limit {limit})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CanopyError(f"{path} is not UTF-8 text") from None
