"""API keys: ``dsp_{key_id}_{secret}`` tokens, stored as SHA-256 of the secret, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.db.ids import new_id, now_ms
from storage.db.models import ApiKey
from storage.errors import NotFoundError

PREFIX = "dsp"
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def _hash(secret: str) -> str:
    # The secret is 256 random bits: a fast hash is enough (no dictionary to protect against).
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyCheck:
    key_id: str | None
    projects: tuple[str, ...] = ()


class KeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, projects: Sequence[str], description: str = "") -> tuple[ApiKey, str]:
        """A new key; the token is returned once and never stored."""
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=new_id(), secret_hash=_hash(secret), projects=sorted(set(projects)), description=description
        )
        self.session.add(key)
        self.session.flush()
        return key, f"{PREFIX}_{key.id}_{secret}"

    def list(self) -> Sequence[ApiKey]:
        return self.session.scalars(select(ApiKey).order_by(ApiKey.create_time)).all()

    def revoke(self, key_id: str) -> None:
        key = self.session.get(ApiKey, key_id)
        if key is None:
            raise NotFoundError(f"API key {key_id} does not exist")
        key.revoked_time = key.revoked_time or now_ms()

    def active_count(self) -> int:
        return len([k for k in self.list() if k.revoked_time is None])

    def check(self, token: str) -> KeyCheck:
        """The key and its projects for a valid token; ``key_id`` None when invalid or revoked."""
        parts = token.split("_", 2)
        key = None
        if len(parts) == 3 and parts[0] == PREFIX and len(parts[1]) == 19 and parts[1].isalnum():
            key = self.session.get(ApiKey, parts[1])
        secret = parts[2] if len(parts) == 3 else token
        expected = key.secret_hash if key is not None else _DUMMY_HASH
        ok = hmac.compare_digest(_hash(secret), expected)  # same work whether or not the key exists
        if not ok or key is None or key.revoked_time is not None:
            return KeyCheck(None)
        return KeyCheck(key.id, tuple(key.projects))
