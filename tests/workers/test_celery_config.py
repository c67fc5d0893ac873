"""Reliability settings (DESIGN.md §3) and the start-up checks on configuration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dsproc.settings import Settings
from workers.celery_app import QUEUE, TASK_NAME, make_celery


def test_reliability_settings() -> None:
    app = make_celery(
        Settings(broker_url="redis://127.0.0.1:6379/9", task_time_limit_s=600, visibility_timeout_s=900)
    )
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 600 and conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] == 900
    assert conf.task_default_queue == QUEUE
    assert TASK_NAME in app.tasks


def test_time_limit_must_stay_below_visibility_timeout() -> None:
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT"):
        Settings(task_time_limit_s=4000, visibility_timeout_s=3600)


def test_s3_backend_needs_an_endpoint() -> None:
    with pytest.raises(ValidationError, match="S3_ENDPOINT_URL"):
        Settings(storage_backend="s3")


def test_embedded_defaults(tmp_path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.embedded_broker and not s.uses_s3
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'dsproc.db'}"
    assert s.resolved_storage_root == (tmp_path / "storage").resolve()
