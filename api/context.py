"""What the API needs from the outside world, injected by the composition root (``dsproc.cli``)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dsproc.settings import Settings
from storage.objectstore import ObjectStore

# The API never imports Celery: it is handed a function that enqueues a task-version id.
Enqueue = Callable[[str], None]


@dataclass
class ApiContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    enqueue: Enqueue
    broker_ping: Callable[[], None]
    auth_required: bool = True
    _fallback_secret: str = field(default_factory=lambda: secrets.token_hex(32))

    @property
    def secret(self) -> str:
        """The key signing the API's own object URLs (random per process when none is configured)."""
        return self.settings.secret_key or self._fallback_secret
