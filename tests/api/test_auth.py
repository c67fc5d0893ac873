"""X-Auth-Token keys: 401/403 envelopes, project isolation, revocation, rate limits, the keys CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.context import ApiContext
from dsproc.settings import Settings
from storage.db.engine import make_engine, make_session_factory, session_scope
from storage.db.keys import KeyRepository
from storage.objectstore.local import LocalObjectStore
from tests.conftest import PHOTOS


@pytest.fixture
def secured(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], object]]:
    settings = Settings(data_dir=tmp_path, database_url=db_url, rate_limit_per_minute=1000)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    tokens = {}
    with session_scope(sessions) as s:
        repo = KeyRepository(s)
        tokens["p1"] = repo.create(["p1"])[1]
        tokens["p2"] = repo.create(["p2"])[1]
        tokens["both"] = repo.create(["p1", "p2"])[1]
        revoked, tokens["revoked"] = repo.create(["p1"])
        repo.revoke(revoked.id)
    store = LocalObjectStore(tmp_path / "storage")
    ctx = ApiContext(settings, engine, sessions, store, enqueue=lambda _: None, broker_ping=lambda: None)
    with TestClient(create_app(ctx)) as client:
        yield client, tokens, store
    engine.dispose()


def _h(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token}


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "ModelArts.0201"),
        ({"X-Auth-Token": "nonsense"}, 401, "ModelArts.0203"),
        ({"X-Auth-Token": "dsp_abcdefghijklmnopqrs_wrong"}, 401, "ModelArts.0203"),
        ({"X-Auth-Token": "x" * 5000}, 401, "ModelArts.0203"),
    ],
)
def test_missing_or_invalid_tokens(secured, headers, status: int, code: str) -> None:
    client, _, _ = secured
    resp = client.get("/v2/p1/processor-tasks", headers=headers)
    assert (resp.status_code, resp.json()["error_code"]) == (status, code)


def test_revoked_and_foreign_tokens(secured) -> None:
    client, tokens, _ = secured
    assert client.get("/v2/p1/processor-tasks", headers=_h(tokens["revoked"])).status_code == 401
    resp = client.get("/v2/p1/processor-tasks", headers=_h(tokens["p2"]))
    assert (resp.status_code, resp.json()["error_code"]) == (403, "ModelArts.0210")
    assert client.get("/v2/p1/processor-tasks", headers=_h(tokens["p1"])).status_code == 200
    assert client.get("/v2/p2/datasets/abcdefghijklmnopqrs", headers=_h(tokens["both"])).status_code == 400


def test_projects_never_see_each_other(secured) -> None:
    client, tokens, store = secured
    store.ensure_bucket("bkt")
    store.ensure_bucket("out")
    store.put_bytes("bkt", "in/x.jpg", (PHOTOS / "opencv-fruits.jpg").read_bytes())
    body = {
        "dataset_name": "mine",
        "data_sources": [{"data_path": "/bkt/in/"}],
        "work_path": "/out/w/",
        "work_path_type": 0,
    }
    dataset_id = client.post("/v2/p1/datasets", json=body, headers=_h(tokens["p1"])).json()["dataset_id"]
    task = {
        "name": "t",
        "data_source": {"type": "DATASET", "source": dataset_id},
        "template": {"id": "sys_data_analyse", "operator_params": []},
    }
    task_id = client.post("/v2/p1/processor-tasks", json=task, headers=_h(tokens["p1"])).json()["task_id"]
    # With a key for both projects, p2's view still holds nothing of p1's.
    both = _h(tokens["both"])
    assert (
        client.get(f"/v2/p2/processor-tasks/{task_id}", headers=both).json()["error_code"] == "ModelArts.4612"
    )
    assert client.get("/v2/p2/processor-tasks", headers=both).json()["count"] == 0
    assert client.get(f"/v2/p2/datasets/{dataset_id}", headers=both).json()["error_code"] == "ModelArts.4352"
    resp = client.post("/v2/p2/processor-tasks", json=task, headers=both)
    assert resp.json()["error_code"] == "ModelArts.4352"  # p1's dataset is not an input p2 can name
    resp = client.delete(f"/v2/p2/processor-tasks/{task_id}", headers=both)
    assert resp.json()["error_code"] == "ModelArts.4612"
    assert client.get(f"/v2/p1/processor-tasks/{task_id}", headers=both).status_code == 200


def test_rate_limit_answers_429_with_retry_after(db_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=db_url, rate_limit_per_minute=3)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        token = KeyRepository(s).create(["p1"])[1]
    ctx = ApiContext(
        settings, engine, sessions, LocalObjectStore(tmp_path / "s"), lambda _: None, lambda: None
    )
    with TestClient(create_app(ctx)) as client:
        codes = [client.get("/v2/p1/processor-tasks", headers=_h(token)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        resp = client.get("/v2/p1/processor-tasks", headers=_h(token))
        assert resp.json()["error_code"] == "ModelArts.4206" and int(resp.headers["Retry-After"]) >= 1
    engine.dispose()


def test_tokens_are_stored_hashed(secured, db_url: str) -> None:
    _, tokens, _ = secured
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT secret_hash FROM api_keys").fetchall()
    engine.dispose()
    secrets_ = {t.split("_", 2)[2] for t in tokens.values()}
    assert rows and not any(r[0] in secrets_ for r in rows)


def test_keys_cli(tmp_path: Path) -> None:
    def dsproc(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        return subprocess.run(
            [sys.executable, "-m", "dsproc.cli", *args, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    created = dsproc("keys", "create", "--project", "alpha", "--project", "beta")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("dsp_") and len(token) > 40
    key_id = token.split("_")[1]
    listed = dsproc("keys", "list")
    assert key_id in listed.stdout and "alpha,beta" in listed.stdout and token not in listed.stdout
    assert dsproc("keys", "revoke", key_id).returncode == 0
    assert "revoked" in dsproc("keys", "list").stdout
    assert dsproc("keys", "revoke", "nosuchkey0000000000").returncode == 1
