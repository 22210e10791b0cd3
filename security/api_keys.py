"""API keys: generated once, shown once, stored only as a SHA-256 hash.

A key is ``tf_`` + 32 random bytes (URL-safe base64), so it has 256 bits of
entropy: a fast unsalted hash is enough (nothing to brute-force, unlike a
password), and it lets ``authenticate`` find the row with an indexed equality
lookup instead of checking every key. Comparing hashes in the database leaks
no useful timing either: an attacker cannot choose the hash of their guess.

Keys are never logged; log the key's id instead.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from include.jobs.models import ApiKey, utcnow

__all__ = [
    "KEY_PREFIX",
    "MAX_KEY_LENGTH",
    "authenticate",
    "create_api_key",
    "generate_key",
    "hash_key",
    "list_api_keys",
    "revoke_api_key",
]

KEY_PREFIX = "tf_"
# Real keys are 46 characters; anything much longer is refused before hashing
# so a huge header costs nothing.
MAX_KEY_LENGTH = 128
MAX_NAME_LENGTH = 200
_KEY_SHAPE = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9_-]{{1,{MAX_KEY_LENGTH}}}")


def generate_key() -> str:
    """A new random API key (shown to the user once, never stored)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """SHA-256 hex digest of ``key``: what the database stores."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """Store a new key under ``name``; returns the row and the plain key.

    The plain key exists only in the return value: the caller shows it once.
    """
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"key name must be 1-{MAX_NAME_LENGTH} characters")
    key = generate_key()
    row = ApiKey(name=name, key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return row, key


def revoke_api_key(session: Session, key_id: str) -> ApiKey:
    """Mark the key revoked (idempotent: an earlier revocation time is kept).

    Raises KeyError for an unknown id. The row stays so jobs keep their owner.
    """
    row = session.get(ApiKey, key_id)
    if row is None:
        raise KeyError(f"no API key with id {key_id!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def authenticate(session: Session, key: str | None) -> ApiKey | None:
    """The active key row for ``key``, or None (unknown, malformed or revoked)."""
    if not key or len(key) > MAX_KEY_LENGTH or not _KEY_SHAPE.fullmatch(key):
        return None
    row = session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return row


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key (revoked ones too), oldest first."""
    return list(session.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).scalars())
