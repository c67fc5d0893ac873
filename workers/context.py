"""Per-process worker resources (DB engine, object store), built lazily inside the worker process."""

from __future__ import annotations

import threading
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

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerContext:
        engine = make_engine(settings.resolved_database_url)
        return cls(settings, engine, make_session_factory(engine), open_store(settings))


_lock = threading.Lock()
_context: WorkerContext | None = None
_settings: Settings | None = None


def configure(settings: Settings, context: WorkerContext | None = None) -> None:
    """Choose the settings (and optionally a ready context) this process's tasks will use."""
    global _settings, _context
    with _lock:
        _settings = settings
        _context = context


def current() -> WorkerContext:
    global _context, _settings
    with _lock:
        if _context is None:
            _settings = _settings or Settings()
            _context = WorkerContext.from_settings(_settings)
        return _context


def reset_after_fork() -> None:
    """Connections must not cross a fork: the child builds its own."""
    global _context
    with _lock:
        if _context is not None:
            _context.engine.dispose(close=False)
        _context = None
