"""Start-up shared by every command: validated settings, migrated DB, reachable object store."""

from __future__ import annotations

import logging
import os
import secrets
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


def ensure_secret(settings: Settings) -> Settings:
    """A stable signing key: ``DSPROC_SECRET_KEY``, else one generated once into the data dir."""
    if settings.secret_key:
        return settings
    path = settings.data_dir / "secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return settings.model_copy(update={"secret_key": path.read_text().strip()})


def bootstrap(settings: Settings) -> Runtime:
    """Create the data folder, migrate the DB to the newest schema, open the store and check it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = ensure_secret(settings)
    if not settings.uses_s3:
        settings.resolved_storage_root.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    store = open_store(settings)
    store.ping()
    return Runtime(settings, engine, make_session_factory(engine), store)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
