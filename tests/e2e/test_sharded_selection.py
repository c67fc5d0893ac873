"""One dedup task shared by two worker processes: Redis broker, PostgreSQL, S3 (moto_server).

With ``DSPROC_SHARD_SIZE=8`` the 56-image selection pass is cut into 7 shards; the worker that
claims the version asks for help over the broker, and the second worker extracts shards too. The
duplicates planted across the whole input must still all be found.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, select

from storage.db.models import VersionShard
from storage.db.shards import DONE
from tests.conftest import EXAMPLES, PHOTOS
from tests.support.processes import (
    create_key,
    dsproc_process,
    free_port,
    poll_task,
    wait_http_ready,
    wait_log,
)
from tests.support.s3server import s3_client, s3_env
from tests.support.services import empty_redis_url, fresh_postgres_schema

pytestmark = pytest.mark.e2e
PROJECT = "shards"
BUCKET = "shard-bucket"
N_ORIGINALS, N_COPIES = 40, 16
SHARD = 8
# series of near-identical views (stereo pairs, video frames, one picture at three sizes) left out
RELATED = (
    *("left", "right", "Elephants", "aloe", "basketball", "rubberwhale", "Blender", "pic", "leuven"),
    *("imageText", "ela_", "graf", "box", "logo", "Logo", "text_", "aero"),
)


def _images() -> tuple[dict[str, bytes], dict[str, str]]:
    """40 unrelated photos at 160 px, and 16 re-encoded copies of some of them placed at the end of
    the input (so each duplicate pair spans shards); returns files and copy → original."""
    rng = np.random.default_rng(3)
    paths = [p for p in sorted(PHOTOS.glob("*.jpg")) if not any(r in p.name for r in RELATED)]
    assert len(paths) >= N_ORIGINALS
    files: dict[str, bytes] = {}
    crops: list[np.ndarray] = []
    for i, path in enumerate(paths[:N_ORIGINALS]):
        image = Image.open(path).convert("RGB")
        image.thumbnail((160, 160))
        crop = np.asarray(image)
        crops.append(crop)
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, "JPEG", quality=92)
        files[f"img{i:04d}.jpg"] = buf.getvalue()
    copies = {}
    for j, i in enumerate(rng.choice(N_ORIGINALS, N_COPIES, replace=False).tolist()):
        buf = io.BytesIO()
        Image.fromarray(crops[i]).save(buf, "JPEG", quality=50)
        files[f"zcopy{j:02d}.jpg"] = buf.getvalue()
        copies[f"zcopy{j:02d}.jpg"] = f"img{i:04d}.jpg"
    return files, copies


def test_two_workers_share_one_selection_pass(tmp_path: Path, s3_endpoint: str) -> None:
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    files, copies = _images()
    for name, data in files.items():
        s3.put_object(Bucket=BUCKET, Key=f"in/{name}", Body=data)
    for name in list(files)[:4]:
        s3.put_object(Bucket=BUCKET, Key=f"warm/{name}", Body=files[name])
    s3.put_object(Bucket=BUCKET, Key="out/.keep", Body=b"")
    broker = empty_redis_url(12)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with fresh_postgres_schema() as db_url:
        env = {
            "DSPROC_DATABASE_URL": db_url,
            "DSPROC_BROKER_URL": broker,
            **s3_env(s3_endpoint),
            "DSPROC_DATA_DIR": str(tmp_path / "data"),
            "DSPROC_SHARD_SIZE": str(SHARD),
            "DSPROC_BATCH_SIZE": "8",
        }
        token = create_key(PROJECT, env)
        client = httpx.Client(headers={"X-Auth-Token": token}, timeout=30)
        worker_args = ["worker", "--concurrency", "1", "--pool", "solo"]
        with (
            dsproc_process(["serve", "--port", str(port)], env, "serve") as api,
            dsproc_process(worker_args, env, "worker-1") as w1,
            dsproc_process(worker_args, env, "worker-2") as w2,
        ):
            wait_http_ready(base, api)
            wait_log(w1, " ready.")
            wait_log(w2, " ready.")

            def submit(folder: str, name: str) -> str:
                """Register ``folder`` as a dataset and POST the official selection body for it."""
                resp = client.post(
                    f"{base}/v2/{PROJECT}/datasets",
                    json={
                        "dataset_name": name,
                        "data_sources": [{"data_path": f"/{BUCKET}/{folder}/"}],
                        "work_path": f"/{BUCKET}/out/",
                        "work_path_type": 0,
                    },
                )
                assert resp.status_code == 201, resp.text
                dataset = client.get(f"{base}/v2/{PROJECT}/datasets/{resp.json()['dataset_id']}").json()
                body = json.loads((EXAMPLES / "create-selection.json").read_text())
                body["name"] = f"select-{name}"
                for src in body["inputs"]:
                    src["source"], src["version_id"] = dataset["dataset_id"], dataset["current_version_id"]
                body["work_path"]["path"] = dataset["dataset_id"]
                resp = client.post(f"{base}/v2/{PROJECT}/processor-tasks", json=body)
                assert resp.status_code == 200, resp.text
                return str(resp.json()["task_id"])

            # Warm both workers up (each loads the model on its first task) so that the helper's
            # start-up does not decide whether it gets a shard before the coordinator is done.
            warm = [submit("warm", f"warm{i}") for i in range(2)]
            for task_id in warm:
                assert poll_task(base, PROJECT, task_id, timeout_s=300, headers=client.headers)["status"] == 2
            task_id = submit("in", "crops")
            task = poll_task(base, PROJECT, task_id, timeout_s=300, headers=client.headers)
            assert task["status"] == 2, task.get("error_msg")

            versions = client.get(f"{base}/v2/{PROJECT}/processor-tasks/{task['task_id']}/versions").json()
            version_id = versions["versions"][0]["task_version_id"]
            deleted: dict[str, str] = {}
            offset = 0
            while True:
                page = client.get(
                    f"{base}/v2/{PROJECT}/processor-tasks/{task['task_id']}/versions/{version_id}/results",
                    params={"offset": offset, "limit": 100, "result_property": 2},
                ).json()
                for record in page["results"]:
                    (ev,) = [
                        e for e in record["result_description"] if e.get("operator") == "SimDeduplication"
                    ]
                    name = record["origin_source"].rsplit("/", 1)[1]
                    deleted[name] = ev["duplicate_of"]["source"].rsplit("/", 1)[1]
                offset += 100
                if not page["has_more"]:
                    break

        engine = create_engine(db_url)
        with engine.connect() as conn:
            rows = conn.execute(
                select(VersionShard.owner, VersionShard.state).where(
                    VersionShard.task_version_id == version_id
                )
            ).all()
        engine.dispose()

    assert len(rows) == (N_ORIGINALS + N_COPIES) // SHARD and all(state == DONE for _, state in rows)
    pids = {owner.split("/")[1] for owner, _ in rows}
    assert len(pids) == 2, f"one worker did all shards: {rows}"  # both processes extracted shards
    # every planted copy (quality 50) is gone, named as a duplicate of its own original (quality 92)
    assert {copy: deleted.get(copy) for copy in copies} == copies
    assert set(deleted) == set(copies)  # and nothing else
    leftovers = s3.list_objects_v2(Bucket=BUCKET, Prefix="out/").get("Contents", [])
    assert not [o["Key"] for o in leftovers if "/.shards/" in o["Key"]]
