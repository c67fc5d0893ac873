"""Celery tasks: the message carries only a task-version id."""

from __future__ import annotations

from celery import shared_task

from workers import context
from workers.celery_app import SHARD_TASK_NAME, TASK_NAME
from workers.runner import STALE_AFTER_S, run_version


@shared_task(name=TASK_NAME, bind=True, max_retries=None, acks_late=True)
def run_task_version(self, version_id: str) -> str:  # type: ignore[no-untyped-def]
    state = run_version(context.current(), version_id)
    if state == "busy":
        # Another worker holds it (or died holding it): look again once its heartbeat could be stale.
        raise self.retry(countdown=STALE_AFTER_S + 5)
    return state


@shared_task(name=SHARD_TASK_NAME, acks_late=True)
def extract_shards(version_id: str, pass_index: int) -> int:
    """Help a running version: extract shards of its pass until none is left; returns how many."""
    from workers.jobs.sharding import help_with_shards

    return help_with_shards(context.current(), version_id, pass_index)
