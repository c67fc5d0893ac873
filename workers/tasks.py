"""Celery tasks: the message carries only a task-version id."""

from __future__ import annotations

from celery import shared_task

from workers import context
from workers.celery_app import TASK_NAME
from workers.runner import STALE_AFTER_S, run_version


@shared_task(name=TASK_NAME, bind=True, max_retries=None, acks_late=True)
def run_task_version(self, version_id: str) -> str:  # type: ignore[no-untyped-def]
    state = run_version(context.current(), version_id)
    if state == "busy":
        # Another worker holds it (or died holding it): look again once its heartbeat could be stale.
        raise self.retry(countdown=STALE_AFTER_S + 5)
    return state
