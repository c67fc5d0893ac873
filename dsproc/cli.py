"""The ``dsproc`` command: serve, worker, run, datasets, migrate."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dsproc.bootstrap import Runtime, bootstrap, configure_logging
from dsproc.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise SystemExit(f"dsproc: invalid configuration: {problems}") from None


def build_api_context(runtime: Runtime, auth_required: bool):  # type: ignore[no-untyped-def]
    """The API's context: the Celery app only as an enqueue function and a broker ping."""
    from api.context import ApiContext
    from workers.celery_app import make_celery
    from workers.dispatch import broker_pinger, enqueuer

    celery_app = make_celery(runtime.settings)
    ctx = ApiContext(
        settings=runtime.settings,
        engine=runtime.engine,
        sessions=runtime.sessions,
        store=runtime.store,
        enqueue=enqueuer(celery_app),
        broker_ping=broker_pinger(celery_app),
        auth_required=auth_required,
    )
    return ctx, celery_app


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from workers import context
    from workers.embedded import EmbeddedWorker

    if args.insecure_no_auth and args.host not in LOOPBACK:
        raise SystemExit(
            "dsproc: --insecure-no-auth is only allowed on a loopback address (--host 127.0.0.1)"
        )
    settings = _settings(args)
    runtime = bootstrap(settings)
    settings = runtime.settings
    if not args.insecure_no_auth:
        _first_key(runtime)
    if args.workers > 1:
        if settings.embedded_broker:
            raise SystemExit(
                "dsproc: --workers > 1 needs DSPROC_BROKER_URL (the embedded worker lives in one process)"
            )
        os.environ["DSPROC_DATA_DIR"] = str(settings.data_dir)
        os.environ["DSPROC_AUTH"] = "off" if args.insecure_no_auth else "on"
        uvicorn.run("dsproc.asgi:create", factory=True, host=args.host, port=args.port, workers=args.workers)
        return 0
    ctx, celery_app = build_api_context(runtime, auth_required=not args.insecure_no_auth)
    worker = None
    if settings.embedded_broker:
        context.configure(
            settings, context.WorkerContext(settings, runtime.engine, runtime.sessions, runtime.store)
        )
        worker = EmbeddedWorker(celery_app)
        worker.start()
        print(f"dsproc: embedded worker running; data in {settings.data_dir.resolve()}", file=sys.stderr)
    try:
        uvicorn.run(create_app(ctx), host=args.host, port=args.port, log_level="info")
    finally:
        if worker is not None:
            worker.stop()
    return 0


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _first_key(runtime: Runtime) -> None:
    """With no API key yet, create one for project ``default`` and print it, once."""
    from storage.db.engine import session_scope
    from storage.db.keys import KeyRepository

    with session_scope(runtime.sessions) as s:
        repo = KeyRepository(s)
        if repo.active_count():
            return
        key, token = repo.create(["default"], "created by the first `dsproc serve`")
    print(
        f"dsproc: created API key {key.id} for project 'default' (shown once; "
        "`dsproc keys create` makes more):\n"
        f"X-Auth-Token: {token}",
        file=sys.stderr,
        flush=True,
    )


def cmd_keys(args: argparse.Namespace) -> int:
    from storage.db.engine import session_scope
    from storage.db.keys import KeyRepository
    from storage.errors import NotFoundError

    runtime = bootstrap(_settings(args))
    with session_scope(runtime.sessions) as s:
        repo = KeyRepository(s)
        if args.keys_cmd == "create":
            key, token = repo.create(args.project, args.description or "")
            print(f"API key {key.id} for project(s) {', '.join(key.projects)}; the token is shown only now:")
            print(token)
        elif args.keys_cmd == "list":
            for key in repo.list():
                if args.project and not set(args.project) & set(key.projects):
                    continue
                state = "revoked" if key.revoked_time else "active"
                print(f"{key.id}  {state:7s}  projects={','.join(key.projects)}  {key.description}")
        else:
            try:
                repo.revoke(args.key_id)
            except NotFoundError as exc:
                print(f"dsproc keys revoke: {exc}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.celery_app import QUEUE, make_celery

    settings = _settings(args)
    if settings.embedded_broker:
        raise SystemExit(
            "dsproc worker needs a shared broker: set DSPROC_BROKER_URL=redis://host:6379/0 "
            "(the embedded memory broker lives inside `dsproc serve`)"
        )
    bootstrap(settings)
    app = make_celery(settings)
    argv = [
        "worker",
        "--loglevel",
        args.loglevel,
        "-Q",
        QUEUE,
        "-c",
        str(args.concurrency or settings.worker_concurrency),
    ]
    if args.pool:
        argv += ["--pool", args.pool]
    app.worker_main(argv)
    return 0


def _print_progress(runtime: Runtime, version_id: str, halt: threading.Event) -> None:
    from storage.db.engine import session_scope
    from storage.db.repositories import TaskRepository

    last = -1
    while not halt.wait(1.0):
        with session_scope(runtime.sessions) as s:
            done = TaskRepository(s).get_version(version_id).progress
        if done != last:
            print(f"dsproc: {done} samples processed", file=sys.stderr, flush=True)
            last = done


def cmd_run(args: argparse.Namespace) -> int:
    from api.errors import ApiError
    from api.schemas.processor_tasks import CreateProcessorTaskRequest
    from api.services.processor_tasks import create_task, render_task
    from storage.db.engine import session_scope
    from storage.db.repositories import COMPLETED, TaskRepository
    from workers import context
    from workers.runner import run_version
    from workers.threads import configure_threads, thread_share

    settings = _settings(args)
    runtime = bootstrap(settings)
    settings = runtime.settings
    try:
        body = CreateProcessorTaskRequest.model_validate_json(Path(args.task_file).read_bytes())
    except (OSError, ValidationError) as exc:
        print(f"dsproc run: cannot read {args.task_file}: {exc}", file=sys.stderr)
        return 2
    body = body.model_copy(update={"create_version": True})
    try:
        with session_scope(runtime.sessions) as s:
            task_id, version_id = create_task(s, args.project, body)
    except ApiError as exc:
        print(json.dumps({"error_code": exc.code, "error_msg": exc.msg}), file=sys.stderr)
        return 2
    assert version_id is not None
    configure_threads(thread_share(1))
    ctx = context.WorkerContext(settings, runtime.engine, runtime.sessions, runtime.store)
    halt = threading.Event()
    progress = threading.Thread(target=_print_progress, args=(runtime, version_id, halt), daemon=True)
    progress.start()
    try:
        run_version(ctx, version_id)
    finally:
        halt.set()
    with session_scope(runtime.sessions) as s:
        task = TaskRepository(s).get(args.project, task_id)
        out = render_task(s, task, is_current=True)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0 if out["status"] == COMPLETED else 1


def cmd_datasets(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from storage.datasets import register_dataset
    from storage.db.engine import session_scope
    from storage.db.models import Dataset

    runtime = bootstrap(_settings(args))
    if args.datasets_cmd == "register":
        with session_scope(runtime.sessions) as s:
            dataset, scan = register_dataset(
                s,
                runtime.store,
                project_id=args.project,
                name=args.name,
                data_path=args.data_path,
                work_path=args.work_path,
            )
            print(
                json.dumps(
                    {"dataset_id": dataset.id, "samples": len(scan.samples), "skipped": len(scan.skipped)}
                )
            )
        return 0
    with session_scope(runtime.sessions) as s:
        for ds in s.scalars(select(Dataset).where(Dataset.project_id == args.project)):
            print(f"{ds.id}  {ds.name}  type={ds.dataset_type}  {ds.data_path}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    bootstrap(_settings(args))
    print("dsproc: database is at the newest schema")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsproc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir", help="folder for the SQLite DB and local storage (default ./dsproc-data)"
        )

    serve = sub.add_parser("serve", help="start the API (and, on the embedded defaults, a worker)")
    serve.add_argument("--host", default=os.environ.get("DSPROC_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("DSPROC_PORT", "8000")))
    serve.add_argument("--workers", type=int, default=1, help="API processes (needs a Redis broker)")
    serve.add_argument(
        "--insecure-no-auth", action="store_true", help="accept requests without X-Auth-Token (loopback only)"
    )
    data_dir(serve)
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run Celery workers against DSPROC_BROKER_URL")
    worker.add_argument("--concurrency", type=int)
    worker.add_argument("--pool", choices=["prefork", "solo", "threads"])
    worker.add_argument("--loglevel", default="INFO")
    data_dir(worker)
    worker.set_defaults(func=cmd_worker)

    run = sub.add_parser("run", help="run one processor task in-process and print its result")
    run.add_argument("task_file", metavar="TASK.json")
    run.add_argument("--project", default="default")
    data_dir(run)
    run.set_defaults(func=cmd_run)

    ds = sub.add_parser("datasets", help="register and list datasets")
    ds_sub = ds.add_subparsers(dest="datasets_cmd", required=True)
    reg = ds_sub.add_parser("register", help="register a dataset from a folder of images or a manifest")
    reg.add_argument("name")
    reg.add_argument("data_path", help="obs://bucket/dir/, s3://bucket/dir/ or /bucket/dir/")
    reg.add_argument("work_path", help="output folder, e.g. /bucket/output/")
    reg.add_argument("--project", default="default")
    data_dir(reg)
    lst = ds_sub.add_parser("list", help="list datasets")
    lst.add_argument("--project", default="default")
    data_dir(lst)
    ds.set_defaults(func=cmd_datasets)

    keys = sub.add_parser("keys", help="manage X-Auth-Token API keys")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    kc = keys_sub.add_parser("create", help="create a key; prints the token alone on the last line")
    kc.add_argument("--project", action="append", required=True, help="project id (repeat for several)")
    kc.add_argument("--description", default="")
    data_dir(kc)
    kl = keys_sub.add_parser("list", help="list keys (never their tokens)")
    kl.add_argument("--project", action="append")
    data_dir(kl)
    kr = keys_sub.add_parser("revoke", help="revoke a key by id")
    kr.add_argument("key_id")
    kr.add_argument("--project", action="append")
    data_dir(kr)
    keys.set_defaults(func=cmd_keys)

    migrate = sub.add_parser("migrate", help="bring the metadata DB to the newest schema")
    data_dir(migrate)
    migrate.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging(os.environ.get("DSPROC_LOG_LEVEL", "INFO"))
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
