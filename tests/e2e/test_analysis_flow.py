"""The whole path over HTTP: register a dataset, run feature analysis, check the result.

Once on the embedded defaults (`dsproc serve` alone: SQLite, local folder, in-process worker), and
once on real services (`dsproc serve` + `dsproc worker` processes, Redis, PostgreSQL, moto_server).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import EXAMPLES, PHOTOS
from tests.support.processes import create_key, dsproc_process, free_port, poll_task, wait_http_ready
from tests.support.s3server import s3_client, s3_env
from tests.support.services import empty_redis_url, fresh_postgres_schema

pytestmark = pytest.mark.e2e
PROJECT = "e2e-project"
N_IMAGES = 10


def _photos() -> list[Path]:
    return sorted(PHOTOS.glob("*.jpg"))[:N_IMAGES]


def _expected_geometry(paths: list[Path]) -> dict[str, list[float]]:
    """Resolution (area) and aspect ratio from the files themselves, independent of dsproc's decoder."""
    areas, ratios = [], []
    for path in paths:
        with Image.open(path) as im:
            w, h = im.size
            if (im.getexif().get(0x0112) or 1) in (5, 6, 7, 8):
                w, h = h, w
        areas.append(float(w * h))
        ratios.append(w / h)
    return {"resolution": areas, "aspect_ratio": ratios}


def _run_flow(base: str, put_object, read_object, token: str) -> dict:
    client = httpx.Client(headers={"X-Auth-Token": token}, timeout=30)
    assert httpx.get(f"{base}/v2/{PROJECT}/processor-tasks").status_code == 401  # auth is on
    for path in _photos():
        put_object(f"in/photos/{path.name}", path.read_bytes())
    put_object("in/photos/notes.txt", b"not an image")
    put_object("out/.keep", b"")
    resp = client.post(
        f"{base}/v2/{PROJECT}/datasets",
        json={
            "dataset_name": "photos",
            "dataset_type": 0,
            "data_sources": [{"data_type": 0, "data_path": "/e2e-bucket/in/photos/"}],
            "work_path": "/e2e-bucket/out/",
            "work_path_type": 0,
        },
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    dataset_id = resp.json()["dataset_id"]
    dataset = client.get(f"{base}/v2/{PROJECT}/datasets/{dataset_id}").json()
    assert dataset["total_sample_count"] == N_IMAGES

    body = json.loads((EXAMPLES / "create-analyse.json").read_text())
    body["data_source"]["source"] = dataset_id
    body["version_id"] = dataset["current_version_id"]
    resp = client.post(f"{base}/v2/{PROJECT}/processor-tasks", json=body)
    assert resp.status_code == 200, resp.text
    task = poll_task(base, PROJECT, resp.json()["task_id"], headers=client.headers)
    assert task["status"] == 2, task.get("error_msg")
    result = task["result"]

    expected = _expected_geometry(_photos())
    assert result["sample_count"] == N_IMAGES and result["analysed_count"] == N_IMAGES
    for metric, values in expected.items():
        stats = result["metrics"][metric]["stats"]
        assert stats["count"] == N_IMAGES
        assert stats["mean"] == pytest.approx(np.mean(values), rel=1e-6)
        assert stats["min"] == pytest.approx(min(values)) and stats["max"] == pytest.approx(max(values))
        assert sum(result["metrics"][metric]["histogram"]["counts"]) == N_IMAGES
    for metric in ("brightness", "saturation", "blurriness", "colorfulness"):
        assert result["metrics"][metric]["stats"]["count"] == N_IMAGES

    key = f"out/photos-{dataset_id}/annotation/evaluation/V001/"
    stored = json.loads(read_object(key))
    assert stored == result
    return task


def test_embedded_defaults_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    storage = tmp_path / "data" / "storage"

    def put(key: str, data: bytes) -> None:
        path = storage / "e2e-bucket" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def read(prefix: str) -> bytes:
        files = sorted((storage / "e2e-bucket" / prefix).glob("*.json"))
        assert len(files) == 1, files
        return files[0].read_bytes()

    env: dict[str, str] = {}  # nothing configured: the embedded defaults
    token = create_key(PROJECT, env, tmp_path / "data")
    args = ["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    with dsproc_process(args, env, "serve-embedded") as proc:
        wait_http_ready(base, proc)
        _run_flow(base, put, read, token)
    assert (tmp_path / "data" / "dsproc.db").is_file()


def test_redis_postgres_s3_end_to_end(tmp_path: Path, s3_endpoint: str) -> None:
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket="e2e-bucket")

    def put(key: str, data: bytes) -> None:
        s3.put_object(Bucket="e2e-bucket", Key=key, Body=data)

    def read(prefix: str) -> bytes:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="e2e-bucket", Prefix=prefix)["Contents"]]
        keys = [k for k in keys if k.endswith(".json")]
        assert len(keys) == 1, keys
        return s3.get_object(Bucket="e2e-bucket", Key=keys[0])["Body"].read()

    broker = empty_redis_url(11)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with fresh_postgres_schema() as db_url:
        env = {
            "DSPROC_DATABASE_URL": db_url,
            "DSPROC_BROKER_URL": broker,
            **s3_env(s3_endpoint),
            "DSPROC_DATA_DIR": str(tmp_path / "data"),
        }
        token = create_key(PROJECT, env)
        with dsproc_process(["serve", "--port", str(port)], env, "serve") as api_proc:
            wait_http_ready(base, api_proc)
            with dsproc_process(["worker", "--concurrency", "1"], env, "worker"):
                _run_flow(base, put, read, token)
        assert not (tmp_path / "data" / "dsproc.db").exists()  # PostgreSQL was used, not SQLite
