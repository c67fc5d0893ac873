"""Start-up shared by every command: validated settings, migrated DB, reachable object store."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dsproc.settings import Settings
from storage.db.engine import make_engine, make_session_factory
from storage.db.migrate import upgrade
from storage.objectstore import ObjectStore
from storage.objectstore.factory import open_store


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore


def bootstrap(settings: Settings) -> Runtime:
    """Create the data folder, migrate the DB to the newest schema, open the store and check it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.uses_s3:
        settings.resolved_storage_root.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    store = open_store(settings)
    store.ping()
    return Runtime(settings, engine, make_session_factory(engine), store)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
