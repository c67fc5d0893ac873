"""An in-process dsproc for operator end-to-end tests: the real API app and the real runner.

``enqueue`` runs the task version synchronously through ``workers.runner.run_version`` (the same
code a Celery worker runs), so a test can POST a task and read its results right after.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from api.context import ApiContext
from dsproc.settings import Settings
from storage.db.engine import make_engine, make_session_factory
from storage.db.migrate import upgrade
from storage.objectstore.local import LocalObjectStore
from workers.context import WorkerContext
from workers.runner import run_version


@dataclass
class Stack:
    client: TestClient
    store: LocalObjectStore
    root: Path
    sessions: Any = None
    worker: WorkerContext | None = None  # what the in-process runner runs with
    project: str = "p1"
    states: list[str] = field(default_factory=list)

    def put_file(self, bucket: str, key: str, data: bytes) -> None:
        self.store.ensure_bucket(bucket)
        self.store.put_bytes(bucket, key, data)

    def create_dataset(self, name: str, data_path: str, work_path: str = "/out/work/", **extra: Any) -> dict:
        """Register a dataset from ``data_path`` (already in the store); returns its description."""
        self.store.ensure_bucket(work_path.strip("/").split("/")[0])
        body = {
            "dataset_name": name,
            "data_sources": [{"data_path": data_path}],
            "work_path": work_path,
            "work_path_type": 0,
            **extra,
        }
        resp = self.client.post(f"/v2/{self.project}/datasets", json=body)
        assert resp.status_code == 201, resp.text
        return self.client.get(f"/v2/{self.project}/datasets/{resp.json()['dataset_id']}").json()

    def example(self, path: Path, dataset: dict, **param_overrides: Any) -> dict:
        """An official request body with only its dataset ids substituted (and chosen params changed)."""
        body = json.loads(path.read_text())
        for src in body.get("inputs") or []:
            src["source"], src["version_id"] = dataset["dataset_id"], dataset["current_version_id"]
        if body.get("data_source"):
            body["data_source"]["source"] = dataset["dataset_id"]
            body["version_id"] = dataset["current_version_id"]
        if body.get("work_path", {}).get("type") == "DATASET":
            body["work_path"]["path"] = dataset["dataset_id"]
        if param_overrides:
            body["template"]["operator_params"][0]["params"].update(param_overrides)
        return body

    def versions(self, task_id: str) -> list[Any]:
        """The task's versions (newest first), read from the metadata DB."""
        from storage.db.repositories import TaskRepository

        with self.sessions() as s:
            rows = TaskRepository(s).versions(task_id)
            s.expunge_all()
            return list(rows)

    def results(self, version_id: str, result_property: int = -1) -> list[Any]:
        """Every per-sample result record of a version."""
        from storage.db.repositories import TaskRepository

        with self.sessions() as s:
            _, rows = TaskRepository(s).results(version_id, result_property, 0, 10**9)
            s.expunge_all()
            return list(rows)

    def run_task(self, body: dict) -> dict:
        """POST a task (it runs during the request's enqueue) and return its description."""
        resp = self.client.post(f"/v2/{self.project}/processor-tasks", json=body)
        assert resp.status_code == 200, resp.text
        return self.client.get(f"/v2/{self.project}/processor-tasks/{resp.json()['task_id']}").json()


@contextmanager
def in_process_stack(
    tmp_path: Path,
    db_url: str | None = None,
    spawn_helpers: Callable[[WorkerContext, str, int, int], None] | None = None,
    **settings: Any,
) -> Iterator[Stack]:
    """``spawn_helpers``, if given, is what the runner calls to ask other workers for help with a
    sharded pass (with the worker context first); without it the coordinator works alone."""
    url = db_url or f"sqlite:///{tmp_path / 'meta.db'}"
    upgrade(url)
    cfg = Settings(data_dir=tmp_path, database_url=url, storage_root=tmp_path / "storage", **settings)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    store = LocalObjectStore(tmp_path / "storage")
    worker_ctx = WorkerContext(cfg, engine, sessions, store)
    if spawn_helpers is not None:
        worker_ctx.spawn_helpers = lambda *args: spawn_helpers(worker_ctx, *args)
    holder: list[Stack] = []

    def enqueue(version_id: str) -> None:
        holder[0].states.append(run_version(worker_ctx, version_id))

    ctx = ApiContext(
        cfg, engine, sessions, store, enqueue=enqueue, broker_ping=lambda: None, auth_required=False
    )
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        holder.append(Stack(client, store, tmp_path / "storage", sessions, worker_ctx))
        yield holder[0]
    engine.dispose()
