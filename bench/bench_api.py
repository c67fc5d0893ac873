"""API latency under load: create and get at 50 concurrent clients, and list with 100,000 tasks.

Real services: `dsproc serve` on PostgreSQL (a fresh schema in database `test`) with a Redis broker
(no worker: tasks stay queued, which is what the API sees in production under load).

    python bench/bench_api.py [--clients 50] [--requests 2000] [--tasks 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.processes import create_key, dsproc_process, free_port, wait_http_ready  # noqa: E402
from tests.support.services import fresh_postgres_schema, redis_url  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def load(base: str, headers: dict[str, str], dataset_id: str, clients: int, total: int) -> None:
    create_lat: list[float] = []
    get_lat: list[float] = []
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:

        async def worker() -> None:
            for i in counter:
                body = {
                    "name": f"load-{i}",
                    "data_source": {"type": "DATASET", "source": dataset_id},
                    "template": {"id": "sys_data_analyse", "operator_params": []},
                }
                t0 = time.perf_counter()
                resp = await client.post(f"{base}/processor-tasks", json=body)
                create_lat.append(time.perf_counter() - t0)
                assert resp.status_code == 200, resp.text
                t0 = time.perf_counter()
                resp = await client.get(f"{base}/processor-tasks/{resp.json()['task_id']}")
                get_lat.append(time.perf_counter() - t0)
                assert resp.status_code == 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    for label, lat in (("create", create_lat), ("get", get_lat)):
        print(f"{label:7s} n={len(lat):5d}  p50 {pct(lat, 0.5):7.1f} ms  p99 {pct(lat, 0.99):7.1f} ms")
    print(f"throughput {2 * total / wall:.0f} requests/s with {clients} clients")


def seed_tasks(db_url: str, n: int) -> None:
    engine = create_engine(db_url)
    now = int(time.time() * 1000)
    rows = [
        {
            "id": f"seed{i:015d}",
            "project_id": "bench",
            "name": f"task-{i:06d}",
            "description": "",
            "template_id": ("sys_data_analyse", "sys_data_cleaning", "sys_data_selection")[i % 3],
            "template": '{"id": "x"}',
            "inputs": "[]",
            "status": i % 5,
            "duration_seconds": i % 97,
            "create_time": now - i,
            "update_time": now - i,
            "workspace_id": "0",
            "source_type": "DATASET",
            "source": f"ds{i % 50}",
            "version_id": f"v{i % 1000}",
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        columns = list(rows[0])
        values = ", ".join(f"CAST(:{c} AS JSON)" if c in ("template", "inputs") else f":{c}" for c in columns)
        conn.execute(
            text(f"INSERT INTO processor_tasks ({', '.join(columns)}) VALUES ({values})"),
            rows,
        )
        conn.execute(text("ANALYZE processor_tasks"))
    engine.dispose()


def list_latency(base: str, headers: dict[str, str]) -> None:
    queries = {
        "default page": {},
        "offset 50000": {"offset": 50000},
        "status=2": {"status": 2},
        "task_type": {"task_type": "sys_data_cleaning"},
        "task_name substring": {"task_name": "0123"},
        "source filter": {"source_type": "DATASET", "source": "ds7"},
        "version_id list": {"version_id": "v1,v2,v3"},
        "query_current": {"query_current": "true", "limit": 100},
        "sort by name asc": {"sort_by": "name", "order": "asc"},
    }
    with httpx.Client(headers=headers, timeout=60) as client:
        for label, params in queries.items():
            lat = []
            for _ in range(20):
                t0 = time.perf_counter()
                resp = client.get(f"{base}/processor-tasks", params=params)
                lat.append(time.perf_counter() - t0)
                assert resp.status_code == 200, resp.text
            print(
                f"list {label:22s} p50 {statistics.median(lat) * 1000:7.1f} ms  count={resp.json()['count']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--api-workers", type=int, default=2, help="`dsproc serve --workers`")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, fresh_postgres_schema() as db_url:
        data = Path(tmp)
        (data / "storage" / "bench" / "in").mkdir(parents=True)
        (data / "storage" / "bench" / "out").mkdir(parents=True)
        for p in sorted(PHOTOS.glob("*.jpg"))[:3]:
            (data / "storage" / "bench" / "in" / p.name).write_bytes(p.read_bytes())
        env = {
            "DSPROC_DATABASE_URL": db_url,
            "DSPROC_BROKER_URL": redis_url(13),
            "DSPROC_DATA_DIR": str(data),
            "DSPROC_MAX_RUNNING_VERSIONS": "1000000",
            "DSPROC_RATE_LIMIT_PER_MINUTE": "10000000",
        }
        headers = {"X-Auth-Token": create_key("bench", env)}
        port = free_port()
        base = f"http://127.0.0.1:{port}/v2/bench"
        with dsproc_process(
            ["serve", "--port", str(port), "--workers", str(args.api_workers)], env, "bench-api"
        ) as proc:
            wait_http_ready(f"http://127.0.0.1:{port}", proc)
            ds = httpx.post(
                f"{base}/datasets",
                headers=headers,
                json={
                    "dataset_name": "b",
                    "data_sources": [{"data_path": "/bench/in/"}],
                    "work_path": "/bench/out/",
                    "work_path_type": 0,
                },
            ).json()["dataset_id"]
            asyncio.run(load(base, headers, ds, args.clients, args.requests))
            seed_tasks(db_url, args.tasks)
            list_latency(base, headers)
        import redis

        redis.Redis.from_url(redis_url(13)).flushdb()


if __name__ == "__main__":
    main()
