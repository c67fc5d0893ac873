"""What the API needs from the outside world, injected by the composition root (``dsproc.cli``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
