"""Schemathesis over every operation of the OpenAPI document, with auth: no 5xx, no schema breaks."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from api.app import create_app
from api.context import ApiContext
from dsproc.settings import Settings
from storage.db.engine import make_engine, make_session_factory, session_scope
from storage.db.keys import KeyRepository
from storage.db.migrate import upgrade
from storage.objectstore.local import LocalObjectStore
from tests.conftest import PHOTOS

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory):
    root: Path = tmp_path_factory.mktemp("contract")
    url = f"sqlite:///{root / 'meta.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        TOKEN["p1"] = KeyRepository(s).create(["p1"])[1]
    store = LocalObjectStore(root / "storage")
    store.ensure_bucket("bucket")
    store.ensure_bucket("out")
    for photo in sorted(PHOTOS.glob("*.jpg"))[:2]:
        store.put_bytes("bucket", f"in/{photo.name}", photo.read_bytes())
    cfg = Settings(data_dir=root, database_url=url, rate_limit_per_minute=100_000)
    ctx = ApiContext(cfg, engine, sessions, store, enqueue=lambda _: None, broker_ping=lambda: None)
    app = create_app(ctx)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:  # a real dataset and task so that some generated ids resolve
        headers = {"X-Auth-Token": TOKEN["p1"]}
        ds = client.post(
            "/v2/p1/datasets",
            headers=headers,
            json={
                "dataset_name": "seed",
                "data_sources": [{"data_path": "/bucket/in/"}],
                "work_path": "/out/w/",
                "work_path_type": 0,
            },
        ).json()
        client.post(
            "/v2/p1/processor-tasks",
            headers=headers,
            json={
                "name": "seed",
                "data_source": {"type": "DATASET", "source": ds["dataset_id"]},
                "template": {"id": "sys_data_analyse", "operator_params": []},
            },
        )
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    engine.dispose()


schema = schemathesis.pytest.from_fixture("api_schema")

# What the issue asks: no 5xx, and every response matches what the document declares. Checks that
# judge business rules (a schema-valid request for an unknown id is a ModelArts 400 by design) are
# not used.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.ignored_auth,
]


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case) -> None:  # type: ignore[no-untyped-def]
    if "project_id" in (case.path_parameters or {}):
        case.path_parameters["project_id"] = "p1"
    case.call_and_validate(headers={"X-Auth-Token": TOKEN["p1"]}, checks=CHECKS)
