"""Stop and delete against a real running worker (Redis broker, `dsproc worker` process)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from tests.conftest import PHOTOS
from tests.support.processes import create_key, dsproc_process, free_port, wait_http_ready
from tests.support.services import redis_url

pytestmark = pytest.mark.e2e
PROJECT = "stopper"
N = 3000


def _thumbnails(folder: Path) -> None:
    """N small real-photo JPEGs (crops of the photos), enough work to stop a run halfway."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(PHOTOS.glob("*.jpg"))[:20]]
    for i in range(N):
        img = photos[i % len(photos)]
        y, x = rng.integers(0, img.shape[0] - 96), rng.integers(0, img.shape[1] - 96)
        buf = io.BytesIO()
        Image.fromarray(img[y : y + 96, x : x + 96]).save(buf, "JPEG", quality=80)
        (folder / f"img{i:05d}.jpg").write_bytes(buf.getvalue())


def _wait(pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_stop_and_delete_a_running_version(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _thumbnails(data / "storage" / "stop-bucket" / "in")
    (data / "storage" / "stop-bucket" / "out").mkdir()
    broker = redis_url(10)
    queue = redis.Redis.from_url(broker)
    queue.flushdb()
    env = {"DSPROC_BROKER_URL": broker, "DSPROC_DATA_DIR": str(data), "DSPROC_BATCH_SIZE": "16"}
    token = create_key(PROJECT, env)
    port = free_port()
    base = f"http://127.0.0.1:{port}/v2/{PROJECT}"
    client = httpx.Client(headers={"X-Auth-Token": token}, timeout=30)
    with dsproc_process(["serve", "--port", str(port)], env, "serve") as api:
        wait_http_ready(f"http://127.0.0.1:{port}", api)
        with dsproc_process(["worker", "--concurrency", "1", "--pool", "solo"], env, "worker"):
            resp = client.post(
                f"{base}/datasets",
                json={
                    "dataset_name": "many",
                    "data_sources": [{"data_path": "/stop-bucket/in/"}],
                    "work_path": "/stop-bucket/out/",
                    "work_path_type": 0,
                },
            )
            assert resp.status_code == 201, resp.text
            dataset_id = resp.json()["dataset_id"]

            def start(name: str) -> tuple[str, str]:
                body = {
                    "name": name,
                    "data_source": {"type": "DATASET", "source": dataset_id},
                    "template": {"id": "sys_data_analyse", "operator_params": []},
                }
                task_id = client.post(f"{base}/processor-tasks", json=body).json()["task_id"]
                version_id = client.get(f"{base}/processor-tasks/{task_id}/versions").json()["versions"][0][
                    "task_version_id"
                ]
                return task_id, version_id

            def version(task_id: str, version_id: str) -> dict:
                return client.get(f"{base}/processor-tasks/{task_id}/versions/{version_id}").json()

            # --- stop mid-run ---
            task_id, version_id = start("to-stop")
            _wait(lambda: version(task_id, version_id).get("processed_sample_count", 0) > 0, 60, "progress")
            assert client.post(f"{base}/processor-tasks/{task_id}/versions/{version_id}/stop").json() == {}
            stopped = _wait(lambda: (v := version(task_id, version_id))["status"] == 4 and v, 60, "status 4")
            assert 0 < stopped["processed_sample_count"] < N
            assert "origin_sample_count" not in stopped  # no counters: it did not complete
            assert client.get(f"{base}/processor-tasks/{task_id}").json()["status"] == 4
            evaluation = (
                data / "storage" / "stop-bucket" / "out" / f"many-{dataset_id}" / "annotation" / "evaluation"
            )
            assert not list(evaluation.rglob("*.json"))  # nothing published
            resp = client.get(f"{base}/processor-tasks/{task_id}/versions/{version_id}/results")
            assert (resp.status_code, resp.json()["error_code"]) == (403, "ModelArts.4613")

            # --- delete mid-run ---
            task_id, version_id = start("to-delete")
            _wait(lambda: version(task_id, version_id).get("processed_sample_count", 0) > 0, 60, "progress")
            assert client.delete(f"{base}/processor-tasks/{task_id}/versions/{version_id}").status_code == 204
            assert version(task_id, version_id)["error_code"] == "ModelArts.4851"
            # The worker notices at its next batch and moves on: a new task runs to completion.
            done_id, _ = start("after")
            _wait(
                lambda: client.get(f"{base}/processor-tasks/{done_id}").json()["status"] == 2,
                120,
                "next task",
            )
            written = list(evaluation.rglob("*.json"))  # only the completed task published a result
            assert len(written) == 1
            assert (
                json.loads(written[0].read_text())
                == client.get(f"{base}/processor-tasks/{done_id}").json()["result"]
            )

            # The queue is left clean: nothing waiting, nothing delivered-but-unacknowledged.
            _wait(lambda: queue.llen("dsproc") == 0 and queue.hlen("unacked") == 0, 30, "an empty queue")
