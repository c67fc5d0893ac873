"""The Celery app: reliability settings (DESIGN.md §3) and per-process set-up."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery
from celery.signals import worker_process_init

from dsproc.settings import Settings
from workers import context
from workers.threads import configure_threads, passive_openmp_waits, thread_share

TASK_NAME = "dsproc.run_task_version"
SHARD_TASK_NAME = "dsproc.extract_shards"
QUEUE = "dsproc"


def shard_spawner(app: Celery) -> Callable[[str, int, int], None]:
    """Sends ``helpers`` messages asking idle workers to extract shards of a version's pass."""

    def spawn(version_id: str, pass_index: int, helpers: int) -> None:
        for _ in range(helpers):
            app.send_task(SHARD_TASK_NAME, args=[version_id, pass_index], queue=QUEUE)

    return spawn


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings``; time limits stay below the broker's visibility timeout."""
    passive_openmp_waits()  # before any task imports torch
    app = Celery("dsproc", broker=settings.broker_url, include=["workers.tasks"])
    transport_options: dict[str, object] = {"visibility_timeout": settings.visibility_timeout_s}
    if settings.embedded_broker:
        transport_options = {"polling_interval": 0.05}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=max(5, settings.task_time_limit_s - 30),
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        result_backend=settings.result_backend,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_concurrency=settings.worker_concurrency,
        worker_max_tasks_per_child=200,
        broker_pool_limit=4,
    )
    context.configure(settings, spawn_helpers=None if settings.embedded_broker else shard_spawner(app))
    import workers.tasks  # noqa: F401 - registers the shared task with this app

    return app


@worker_process_init.connect
def _init_process(**_: object) -> None:
    """A forked pool process builds its own DB connections and takes its share of the cores."""
    context.reset_after_fork()
    settings = context.current().settings
    configure_threads(thread_share(settings.worker_concurrency))
