"""Named staff of the web app: who they are, their role, their password and TOTP secret.

One sealed row per user in the store's `staff` table (migration 9), keyed by a keyed tag of
the name: on disk nothing says who the staff are, nor their role, password hash (Argon2id)
or TOTP secret. A user is added with a one-time enrolment link (only its digest is kept,
with its expiry); enrolling sets the password and proves the TOTP app works with one valid
code. A TOTP code is accepted once: the time step it belongs to is remembered, so a code
seen over someone's shoulder cannot be replayed in the same half minute.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import argon2
import pyotp

from node.store import Store
from protocol import limits
from protocol.errors import StaffError

TABLE = "staff"
ROLES = ("reader", "editor", "admin")  # each may do what the one before it may, and more
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_HASHER = argon2.PasswordHasher()  # Argon2id, RFC 9106 low-memory profile


@functools.cache
def _dummy() -> str:
    """A hash to check an unknown name's password against, so unknown names take as long as
    known ones. Made on the first sign-in, not on import: every `canopy` process imports
    this module and an Argon2id hash costs ~0.2 s of CPU."""
    return _HASHER.hash("not a password of anyone")


def _verify_hash(stored: str, password: str) -> bool:
    """Argon2id check of `password` (in a worker thread); an unknown name (`stored` empty)
    is checked against the dummy. The dummy is made on the first sign-in of either kind,
    so which kind came first does not show in its time."""
    dummy = _dummy()
    return _HASHER.verify(stored or dummy, password)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    enrolled: bool
    last_signin_ms: int  # 0: never


def check_name(name: str) -> str:
    if not (0 < len(name) <= limits.UI_STAFF_NAME_MAX_CHARS) or not _NAME.fullmatch(name):
        raise StaffError(
            f"a staff name is 1 to {limits.UI_STAFF_NAME_MAX_CHARS} letters, digits,"
            " '.', '_' or '-'"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise StaffError(f"the role must be one of: {', '.join(ROLES)}")
    return role


def _digest(token: str) -> bytes:
    return hashlib.blake2b(token.encode("utf-8", "replace"), digest_size=32).digest()


def _user(name: str, row: dict[str, object]) -> User:
    last = row.get("last", 0)
    return User(
        name, str(row["role"]), bool(row.get("hash")), int(last) if isinstance(last, int) else 0
    )


async def users(store: Store) -> list[User]:
    rows = await store.rows(TABLE)
    return sorted((_user(k.decode(), v) for k, v in rows.items()), key=lambda u: u.name)


async def _row(store: Store, name: str) -> dict[str, object] | None:
    row = (await store.rows(TABLE)).get(name.encode())
    return dict(row) if row is not None else None


async def _put(store: Store, name: str, row: dict[str, object]) -> None:
    await store.put_row(TABLE, name.encode(), row)  # type: ignore[arg-type]


async def add(store: Store, name: str, role: str, now_ms: int) -> str:
    """A new user (not yet enrolled) and its one-time enrolment token."""
    check_name(name)
    check_role(role)
    rows = await store.rows(TABLE)
    if name.encode() in rows:
        raise StaffError(f"there is already a staff user named {name}")
    if len(rows) >= limits.UI_MAX_STAFF:
        raise StaffError(f"this node has {limits.UI_MAX_STAFF} staff users already")
    token = secrets.token_urlsafe(32)
    row: dict[str, object] = {
        "role": role,
        "hash": "",
        "totp": pyotp.random_base32(),
        "step": 0,
        "enrol": _digest(token),
        "enrol_until": now_ms + limits.UI_ENROL_TTL_S * 1000,
        "last": 0,
    }
    await _put(store, name, row)
    return token


async def remove(store: Store, name: str) -> bool:
    return await store.delete_row(TABLE, name.encode())


async def enrolling(store: Store, token: str, now_ms: int) -> tuple[str, str] | None:
    """(name, TOTP secret) of the user this enrolment token is for, while it is valid."""
    key = _digest(token)
    for raw, row in (await store.rows(TABLE)).items():
        enrol = row.get("enrol")
        if isinstance(enrol, bytes) and hmac.compare_digest(enrol, key):
            until = row.get("enrol_until", 0)
            if isinstance(until, int) and until > now_ms and not row.get("hash"):
                return raw.decode(), str(row["totp"])
            return None
    return None


def provisioning_uri(name: str, secret: str, node_name: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=f"Canopy {node_name}")


def _step_of(secret: str, code: str, now_s: float, after: int) -> int | None:
    """The time step (previous, current or next) whose code this is, if newer than `after`."""
    totp = pyotp.TOTP(secret)
    here = int(now_s) // limits.UI_TOTP_STEP_S
    for step in (here - 1, here, here + 1):
        if step > after and hmac.compare_digest(
            totp.at(step * limits.UI_TOTP_STEP_S).encode(), code.encode()
        ):
            return step
    return None


def check_password(password: str) -> None:
    if not limits.UI_PASSWORD_MIN_CHARS <= len(password) <= limits.UI_PASSWORD_MAX_CHARS:
        raise StaffError(
            f"the password must be {limits.UI_PASSWORD_MIN_CHARS} to"
            f" {limits.UI_PASSWORD_MAX_CHARS} characters"
        )


async def enrol(store: Store, token: str, password: str, code: str, now_ms: int) -> User | None:
    """Complete an enrolment: the password set and the link spent, once `code` is valid."""
    found = await enrolling(store, token, now_ms)
    if found is None:
        return None
    name, secret = found
    check_password(password)
    row = await _row(store, name)
    assert row is not None
    step = _step_of(secret, code.strip(), now_ms / 1000, int(str(row.get("step", 0))))
    if step is None:
        raise StaffError("that code is not the one your authenticator app shows now")
    row.update(
        hash=await asyncio.to_thread(_HASHER.hash, password),
        step=step,
        enrol=b"",
        enrol_until=0,
        last=now_ms,
    )
    await _put(store, name, row)
    return _user(name, row)


async def verify(store: Store, name: str, password: str, code: str, now_ms: int) -> User | None:
    """The user, when name, password and a fresh TOTP code all match; None otherwise."""
    row = await _row(store, name) if _NAME.fullmatch(name or "-") else None
    stored = str(row.get("hash", "")) if row else ""
    password = password[: limits.UI_PASSWORD_MAX_CHARS]
    try:
        ok = await asyncio.to_thread(_verify_hash, stored, password)
    except argon2.exceptions.VerificationError:
        ok = False
    except argon2.exceptions.InvalidHashError:
        ok = False
    if not ok or row is None or not stored:
        return None
    step = _step_of(str(row["totp"]), code.strip(), now_ms / 1000, int(str(row.get("step", 0))))
    if step is None:
        return None
    row.update(step=step, last=now_ms)
    await _put(store, name, row)
    return _user(name, row)
