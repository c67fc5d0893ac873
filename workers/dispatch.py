"""Enqueueing and broker health, handed to the API as plain functions."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from workers.celery_app import QUEUE, TASK_NAME


def enqueuer(app: Celery) -> Callable[[str], None]:
    def enqueue(version_id: str) -> None:
        app.send_task(TASK_NAME, args=[version_id], queue=QUEUE)

    return enqueue


def broker_pinger(app: Celery) -> Callable[[], None]:
    def ping() -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)

    return ping
