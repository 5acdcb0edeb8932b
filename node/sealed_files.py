"""Reading a sealed file a person names (a bundle to import, a backup to restore).

Owns the checks before the bytes reach protocol/: the file is bounded in size before it is
read into memory, and every way reading it fails is one clear error of the caller's type
(`BundleError`, `BackupError`). It never opens or parses what it reads.
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
