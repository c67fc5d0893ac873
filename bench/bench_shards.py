"""Sharded selection: one dedup task on one worker process vs shared by several, same files, one run.

Builds N images (seeded 320 px crops of ``../shared/datasets/photos``, every 10th one followed later
in the input by a re-encoded copy), then runs the official ``create-selection.json`` task through
real processes (``dsproc serve`` + ``dsproc worker``, Redis broker, PostgreSQL, local storage):

- ``alone``: ``dsproc worker --concurrency 1`` with sharding off (one process, all cores' threads);
- ``sharded``: ``dsproc worker --concurrency C`` (C processes, one core each) with
  ``DSPROC_SHARD_SIZE`` set, so every process extracts shards of the same pass.

Time is POST → completed, measured by polling; the deleted sets of both runs must be identical.
Needs Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, database ``test``) like the tests.

    python bench/bench_shards.py [--images 960] [--concurrency 2] [--shard-size 64]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.processes import (  # noqa: E402
    create_key,
    dsproc_process,
    free_port,
    poll_task,
    wait_http_ready,
    wait_log,
)
from tests.support.services import empty_redis_url, fresh_postgres_schema  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"
EXAMPLE = ROOT.parent / "shared" / "reference" / "examples" / "create-selection.json"
PROJECT = "bench"


def build_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(11)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(PHOTOS.glob("*.jpg"))]
    photos = [p for p in photos if min(p.shape[:2]) >= 320]
    folder.mkdir(parents=True)
    copies: list[bytes] = []
    for i in range(n - n // 10):
        img = photos[i % len(photos)]
        y, x = rng.integers(0, img.shape[0] - 319), rng.integers(0, img.shape[1] - 319)
        crop = Image.fromarray(img[y : y + 320, x : x + 320])
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=90)
        (folder / f"img{i:05d}.jpg").write_bytes(buf.getvalue())
        if i % 10 == 0:
            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=45)
            copies.append(buf.getvalue())
    for j, data in enumerate(copies):
        (folder / f"zcopy{j:05d}.jpg").write_bytes(data)


def run(data: Path, concurrency: int, shard_size: int) -> tuple[float, set[str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with fresh_postgres_schema() as db_url:
        broker = empty_redis_url(13)
        env = {
            "DSPROC_DATABASE_URL": db_url,
            "DSPROC_BROKER_URL": broker,
            "DSPROC_DATA_DIR": str(data),
            "DSPROC_SHARD_SIZE": str(shard_size),
        }
        token = create_key(PROJECT, env)
        client = httpx.Client(headers={"X-Auth-Token": token}, timeout=60)
        worker = ["worker", "--concurrency", str(concurrency)]
        with (
            dsproc_process(["serve", "--port", str(port)], env, "serve") as api,
            dsproc_process(worker, env, "worker") as w,
        ):
            wait_http_ready(base, api)
            wait_log(w, " ready.")
            name = f"set{time.monotonic_ns()}"
            resp = client.post(
                f"{base}/v2/{PROJECT}/datasets",
                json={
                    "dataset_name": name,
                    "data_sources": [{"data_path": "/bench/in/"}],
                    "work_path": "/bench/out/",
                    "work_path_type": 0,
                },
            )
            resp.raise_for_status()
            dataset = client.get(f"{base}/v2/{PROJECT}/datasets/{resp.json()['dataset_id']}").json()
            body = json.loads(EXAMPLE.read_text())
            body["name"] = name
            for src in body["inputs"]:
                src["source"], src["version_id"] = dataset["dataset_id"], dataset["current_version_id"]
            body["work_path"]["path"] = dataset["dataset_id"]
            start = time.perf_counter()
            resp = client.post(f"{base}/v2/{PROJECT}/processor-tasks", json=body)
            resp.raise_for_status()
            task = poll_task(base, PROJECT, resp.json()["task_id"], timeout_s=3600, headers=client.headers)
            elapsed = time.perf_counter() - start
            assert task["status"] == 2, task.get("error_msg")
            versions = client.get(f"{base}/v2/{PROJECT}/processor-tasks/{task['task_id']}/versions").json()
            vid = versions["versions"][0]["task_version_id"]
            deleted: set[str] = set()
            offset = 0
            while True:
                page = client.get(
                    f"{base}/v2/{PROJECT}/processor-tasks/{task['task_id']}/versions/{vid}/results",
                    params={"offset": offset, "limit": 100, "result_property": 2},
                ).json()
                deleted |= {r["origin_source"].rsplit("/", 1)[1] for r in page["results"]}
                offset += 100
                if not page["has_more"]:
                    return elapsed, deleted


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--images", type=int, default=960)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        build_images(data / "storage" / "bench" / "in", args.images)
        (data / "storage" / "bench" / "out").mkdir(parents=True)
        alone, deleted_alone = run(data, 1, 0)
        sharded, deleted_sharded = run(data, args.concurrency, args.shard_size)
    n = args.images
    print(
        f"# {n} images, {len(deleted_alone)} deleted; sharded run found the same set: "
        f"{deleted_alone == deleted_sharded}"
    )
    print(f"alone   (1 process, sharding off):        {alone:6.1f} s  {n / alone:6.1f} images/s")
    print(
        f"sharded ({args.concurrency} processes, shards of {args.shard_size}): "
        f"{sharded:6.1f} s  {n / sharded:6.1f} images/s"
    )
    print(f"ratio: {alone / sharded:.2f}x")


if __name__ == "__main__":
    main()
