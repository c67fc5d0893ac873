"""Task overhead: POST → worker start, and POST → completed, for a 10-image feature analysis.

Runs `dsproc serve` on the embedded defaults (memory broker, in-process worker) and, when Redis
answers at 127.0.0.1:6379, `dsproc serve` + `dsproc worker` on Redis (SQLite file shared by both).
Worker start is read from the version's `started_at` in the metadata DB.

    python bench/bench_task_overhead.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.processes import dsproc_process, free_port, wait_http_ready  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"


def _setup(data_dir: Path, base: str) -> tuple[str, str]:
    bucket = data_dir / "storage" / "bench"
    (bucket / "in").mkdir(parents=True)
    (bucket / "out").mkdir(parents=True)
    for path in sorted(PHOTOS.glob("*.jpg"))[:10]:
        (bucket / "in" / path.name).write_bytes(path.read_bytes())
    resp = httpx.post(
        f"{base}/v2/bench/datasets",
        json={
            "dataset_name": "ten",
            "data_sources": [{"data_path": "/bench/in/"}],
            "work_path": "/bench/out/",
            "work_path_type": 0,
        },
        timeout=30,
    ).json()
    dataset_id = resp["dataset_id"]
    version_id = httpx.get(f"{base}/v2/bench/datasets/{dataset_id}").json()["current_version_id"]
    return dataset_id, version_id


def _measure(base: str, db_url: str, runs: int) -> tuple[list[float], list[float]]:
    data_dir = Path(db_url.split("///", 1)[1]).parent
    dataset_id, version_id = _setup(data_dir, base)
    engine = create_engine(db_url)
    to_start, to_done = [], []
    for i in range(runs + 1):
        body = {
            "name": f"run-{i}",
            "data_source": {"type": "DATASET", "source": dataset_id, "version_id": version_id},
            "template": {
                "id": "sys_data_analyse",
                "operator_params": [{"id": "sys_data_analyse", "params": {"op_list": []}}],
            },
        }
        t0 = time.time()
        task_id = httpx.post(f"{base}/v2/bench/processor-tasks", json=body, timeout=30).json()["task_id"]
        while True:
            status = httpx.get(f"{base}/v2/bench/processor-tasks/{task_id}").json()["status"]
            if status in (2, 3, 4):
                break
            time.sleep(0.005)
        t1 = time.time()
        assert status == 2, status
        with engine.connect() as conn:
            started = conn.execute(
                text("SELECT started_at FROM task_versions WHERE task_id = :t"), {"t": task_id}
            ).scalar_one()
        if i == 0:
            continue  # warm-up: imports, first decode
        to_start.append(started / 1000 - t0)
        to_done.append(t1 - t0)
    engine.dispose()
    return to_start, to_done


def _report(label: str, to_start: list[float], to_done: list[float]) -> None:
    print(
        f"{label:10s} POST→worker start: median {statistics.median(to_start) * 1000:7.1f} ms "
        f"(max {max(to_start) * 1000:.1f})   "
        f"POST→completed: median {statistics.median(to_done) * 1000:7.1f} ms "
        f"(max {max(to_done) * 1000:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "embedded"
        port = free_port()
        with dsproc_process(
            ["serve", "--port", str(port), "--data-dir", str(data), "--insecure-no-auth"],
            {},
            "bench-embedded",
        ) as p:
            wait_http_ready(f"http://127.0.0.1:{port}", p)
            _report(
                "embedded", *_measure(f"http://127.0.0.1:{port}", f"sqlite:///{data}/dsproc.db", args.runs)
            )
    try:
        import redis

        redis.Redis(socket_connect_timeout=1).ping()
    except Exception:
        print("redis: not reachable at 127.0.0.1:6379, skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "redis"
        env = {"DSPROC_BROKER_URL": "redis://127.0.0.1:6379/12", "DSPROC_DATA_DIR": str(data)}
        redis.Redis(db=12).flushdb()
        port = free_port()
        with dsproc_process(["serve", "--port", str(port), "--insecure-no-auth"], env, "bench-api") as p:
            wait_http_ready(f"http://127.0.0.1:{port}", p)
            with dsproc_process(["worker", "--concurrency", "1"], env, "bench-worker"):
                time.sleep(3)
                _report(
                    "redis", *_measure(f"http://127.0.0.1:{port}", f"sqlite:///{data}/dsproc.db", args.runs)
                )


if __name__ == "__main__":
    main()
