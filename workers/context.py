"""Per-process worker resources (DB engine, object store), built lazily inside the worker process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dsproc.settings import Settings
from storage.db.engine import make_engine, make_session_factory
from storage.objectstore import ObjectStore
from storage.objectstore.factory import open_store


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    # Asks other workers to help with a sharded pass: (version_id, pass_index, helpers); None = alone.
    spawn_helpers: Callable[[str, int, int], None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, spawn_helpers: Callable[[str, int, int], None] | None = None
    ) -> WorkerContext:
        engine = make_engine(settings.resolved_database_url)
        return cls(settings, engine, make_session_factory(engine), open_store(settings), spawn_helpers)


_lock = threading.Lock()
_context: WorkerContext | None = None
_settings: Settings | None = None
_spawn: Callable[[str, int, int], None] | None = None


def configure(
    settings: Settings,
    context: WorkerContext | None = None,
    spawn_helpers: Callable[[str, int, int], None] | None = None,
) -> None:
    """Choose the settings (and optionally a ready context) this process's tasks will use."""
    global _settings, _context, _spawn
    with _lock:
        _settings = settings
        _context = context
        _spawn = spawn_helpers


def current() -> WorkerContext:
    global _context, _settings
    with _lock:
        if _context is None:
            _settings = _settings or Settings()
            _context = WorkerContext.from_settings(_settings, _spawn)
        return _context


def reset_after_fork() -> None:
    """Connections must not cross a fork: the child builds its own."""
    global _context
    with _lock:
        if _context is not None:
            _context.engine.dispose(close=False)
        _context = None
