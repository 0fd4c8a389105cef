"""Project keys and the admin token.

A key looks like ``ga_<prefix>_<secret>``. Only its prefix and a SHA-256 hash of the whole key
are stored: keys are 256-bit random tokens, so a fast hash is safe (there is nothing to
brute-force), and the prefix finds the row without scanning.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
import zlib
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import TypeVar

from sqlalchemy import CursorResult, Update, bindparam, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .errors import Forbidden, NotFound, Unauthorized
from .models import ApiKey, Budget, Run, utcnow

KEY_MARK = "ga"
# last_used_at is refreshed at most this often, so reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Every request runs this lookup, so it is built once and fetches plain columns, not an object.
_key = ApiKey.__table__.c
KEY_BY_PREFIX = select(
    _key.id, _key.project_id, _key.secret_hash, _key.scope, _key.revoked_at, _key.last_used_at
).where(_key.prefix == bindparam("prefix"))


class Scope(str, Enum):
    read = "read"
    write = "write"


#: The rows a key may read only within its own project.
Owned = TypeVar("Owned", Run, Budget)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key of one project, with its scope."""

    project_id: uuid.UUID
    key_id: uuid.UUID
    scope: Scope

    def require_write(self) -> None:
        if self.scope is not Scope.write:
            raise Forbidden("this key is read-only; use the project's write key")

    def own(self, session: Session, model: type[Owned], item_id: uuid.UUID, what: str) -> Owned:
        """The ``model`` row ``item_id`` if it is of the caller's project.

        Otherwise 404 ``{what} {item_id} not found``, never 403: another project's ids are not
        told apart from ids that do not exist.
        """
        item = session.get(model, item_id)
        if item is None or item.project_id != self.project_id:
            raise NotFound(f"{what} {item_id} not found")
        return item


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """Return ``(key, prefix)`` for a fresh key."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_MARK}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix


def parse_bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <key>'")
    return token.strip()


def authenticate_key(session: Session, key: str) -> tuple[Principal, bool]:
    """Find and check a project key; raise :class:`Unauthorized` when it does not hold.

    Returns the caller and whether the key's ``last_used_at`` is stale.
    """
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != KEY_MARK:
        raise Unauthorized("malformed API key")
    row = session.execute(KEY_BY_PREFIX, {"prefix": parts[1]}).one_or_none()
    # Hash even when no row is found, so timing does not tell which prefixes exist.
    expected = row.secret_hash if row is not None else hash_key("")
    if not hmac.compare_digest(hash_key(key), expected) or row is None:
        raise Unauthorized("unknown API key")
    if row.revoked_at is not None:
        raise Unauthorized("this API key has been revoked")
    stale = row.last_used_at is None or utcnow() - row.last_used_at > LAST_USED_RESOLUTION
    return Principal(project_id=row.project_id, key_id=row.id, scope=Scope(row.scope)), stale


def mark_key_used(write_sessions: sessionmaker[Session], key_id: uuid.UUID) -> bool:
    """Record a key's use in a short transaction of its own, so read requests stay read-only.

    It never waits for a writer: a read once waited 8.3 s for SQLite's write lock only to
    record this (issue 16, finding 9). While the lock is taken (SQLite) or the key's row is
    (PostgreSQL), the update is skipped, and a later request records the use; the time is
    kept to a minute anyway. Returns whether it was recorded.
    """
    bind = write_sessions.kw["bind"]
    if bind.dialect.name != "sqlite":
        with write_sessions() as session, session.begin():
            result = session.execute(_mark_unless_locked(key_id))
            return isinstance(result, CursorResult) and result.rowcount > 0
    with bind.connect() as connection:
        # Taking the DB-API connection does not begin a transaction, so the timeout is set
        # before BEGIN IMMEDIATE asks for the lock.
        raw = connection.connection.dbapi_connection
        assert raw is not None
        (waited,) = raw.execute("PRAGMA busy_timeout").fetchone()
        raw.execute("PRAGMA busy_timeout=0")
        try:
            connection.execute(_mark_unless_locked(key_id))
            connection.commit()
            return True
        except OperationalError:
            connection.rollback()
            return False
        finally:
            raw.execute(f"PRAGMA busy_timeout={int(waited)}")


def _mark_unless_locked(key_id: uuid.UUID) -> Update:
    locked_row = select(ApiKey.id).where(ApiKey.id == key_id).with_for_update(skip_locked=True)
    return update(ApiKey).where(ApiKey.id.in_(locked_row)).values(last_used_at=utcnow())


def mark_key_used_in(session: Session, key_id: uuid.UUID) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


MIN_ADMIN_TOKEN_CHARS = 32
MIN_ADMIN_TOKEN_DISTINCT = 10
# A token must not be describable in fewer bytes than this, so at most 8 bits a byte leaves it
# no fewer than 128 bits for a guesser who knows the pattern.
MIN_ADMIN_TOKEN_DEFLATED_BYTES = 16
NEW_TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_DEFLATE_FRAME = len(zlib.compress(b"", 9))


def _deflated_bytes(data: bytes) -> int:
    """Bytes zlib needs for ``data``, less its fixed header and checksum."""
    return len(zlib.compress(data, 9)) - _DEFLATE_FRAME


def pattern_bytes(token: str) -> int:
    """How short a description of ``token`` zlib finds, in bytes: its text or its steps.

    The steps are the differences between successive code points (mod 256), so a run like
    ``abcdef...`` deflates as well as a repetition like ``0123456789`` x 4 does. A random token of
    32 URL-safe characters deflates to about 30 bytes either way; a patterned one to under 10.
    """
    steps = bytes((ord(b) - ord(a)) % 256 for a, b in zip(token, token[1:], strict=False))
    return min(_deflated_bytes(token.encode()), _deflated_bytes(steps))


def admin_token_problem(token: str | None) -> str | None:
    """Why ``token`` may not guard project creation, or ``None`` when it may.

    Length, variety and pattern are judged: a token made by ``secrets.token_urlsafe(32)`` has
    43 characters from 64 with no pattern, while the tokens people type by hand ("admin",
    "changeme", a repeated letter, ``0123456789`` four times, the alphabet) fail one of them.
    """
    if not token:
        return (
            "GREENAUDIT_ADMIN_TOKEN is not set. There is no default; make one with: "
            f"{NEW_TOKEN_HINT}"
        )
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        return (
            f"GREENAUDIT_ADMIN_TOKEN is too short ({len(token)} characters; at least "
            f"{MIN_ADMIN_TOKEN_CHARS}). Make one with: {NEW_TOKEN_HINT}"
        )
    if len(set(token)) < MIN_ADMIN_TOKEN_DISTINCT:
        return (
            f"GREENAUDIT_ADMIN_TOKEN is too repetitive ({len(set(token))} distinct characters; "
            f"at least {MIN_ADMIN_TOKEN_DISTINCT}). Make one with: {NEW_TOKEN_HINT}"
        )
    described = pattern_bytes(token)
    if described < MIN_ADMIN_TOKEN_DEFLATED_BYTES:
        return (
            "GREENAUDIT_ADMIN_TOKEN is patterned: it repeats or runs in sequence, so zlib "
            f"describes it in {described} bytes (at least {MIN_ADMIN_TOKEN_DEFLATED_BYTES}, "
            f"128 bits, are needed). Make a random one with: {NEW_TOKEN_HINT}"
        )
    return None


def check_admin_token(configured: str | None, presented: str) -> None:
    # The service does not start without a token (admin_token_problem), so an unset one here
    # is only a second guard, and is simply no match.
    if not configured or not hmac.compare_digest(presented.encode(), configured.encode()):
        raise Unauthorized("wrong admin token")
