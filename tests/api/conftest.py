"""An API app over a real DB (SQLite and PostgreSQL) and a local object store; enqueued ids are kept."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.context import ApiContext
from dsproc.settings import Settings
from storage.db.engine import make_engine, make_session_factory
from storage.db.models import TaskVersion
from storage.objectstore.local import LocalObjectStore
from tests.conftest import PHOTOS


@dataclass
class Harness:
    client: TestClient
    store: LocalObjectStore
    root: Path
    enqueued: list[str] = field(default_factory=list)
    committed_at_enqueue: list[bool] = field(default_factory=list)

    def put_photos(self, bucket: str, prefix: str, names: list[str]) -> None:
        self.store.ensure_bucket(bucket)
        for name in names:
            self.store.put_bytes(bucket, prefix + name, (PHOTOS / Path(name).name).read_bytes())

    def register(self, name: str = "flowers", n: int = 3, project: str = "p1") -> str:
        photos = sorted(p.name for p in PHOTOS.glob("*.jpg"))[:n]
        self.put_photos("bucket", f"in-{name}/", photos)
        self.store.ensure_bucket("out")
        resp = self.client.post(
            f"/v2/{project}/datasets",
            json={
                "dataset_name": name,
                "data_sources": [{"data_path": f"/bucket/in-{name}/"}],
                "work_path": "/out/work/",
                "work_path_type": 0,
            },
        )
        assert resp.status_code == 201, resp.text
        return resp.json()["dataset_id"]


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    settings = Settings(data_dir=tmp_path, database_url=db_url)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    store = LocalObjectStore(tmp_path / "storage")
    harness: Harness

    def enqueue(version_id: str) -> None:
        with sessions() as s:  # a fresh connection sees the version only if it was committed
            harness.committed_at_enqueue.append(s.get(TaskVersion, version_id) is not None)
        harness.enqueued.append(version_id)

    ctx = ApiContext(
        settings, engine, sessions, store, enqueue=enqueue, broker_ping=lambda: None, auth_required=False
    )
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        harness = Harness(client, store, tmp_path / "storage")
        yield harness
    engine.dispose()
    shutil.rmtree(tmp_path / "storage", ignore_errors=True)
