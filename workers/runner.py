"""The task runner: claim → read inputs → run the template's job → commit outputs → terminal state."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from storage.db.engine import session_scope
from storage.db.ids import now_ms
from storage.db.models import ProcessorTask, SampleResult, TaskVersion
from storage.db.repositories import COMPLETED, FAILED, STOPPED, TaskRepository
from workers.context import WorkerContext
from workers.errors import StopRequested, WorkerError

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0  # a running version whose heartbeat is this old lost its worker


@dataclass
class JobOutcome:
    """What a job produced; written with the terminal state in one transaction."""

    counters: dict[str, int]
    results: list[SampleResult] = field(default_factory=list)
    result: dict[str, Any] | None = None
    output_path: str | None = None


class JobControl:
    """Progress reporting and cooperative stop, checked by jobs between batches."""

    def __init__(self, ctx: WorkerContext, version_id: str, min_interval_s: float = 1.0) -> None:
        self.ctx = ctx
        self.version_id = version_id
        self.min_interval_s = min_interval_s
        self._last = 0.0

    def checkpoint(self, done: int, *, force: bool = False) -> None:
        """Record progress (throttled) and raise ``StopRequested`` if a stop was asked for."""
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        with session_scope(self.ctx.sessions) as s:
            repo = TaskRepository(s)
            repo.set_progress(self.version_id, done)
            if repo.stop_requested(self.version_id):
                raise StopRequested("stopped by request")


Job = Callable[[WorkerContext, ProcessorTask, TaskVersion, JobControl], JobOutcome]


def _jobs() -> dict[str, Job]:
    from workers.jobs.analysis import run_analysis

    return {"sys_data_analyse": run_analysis}


class _Heartbeat(threading.Thread):
    def __init__(self, ctx: WorkerContext, version_id: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{version_id}")
        self.ctx, self.version_id = ctx, version_id
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(HEARTBEAT_S):
            try:
                with session_scope(self.ctx.sessions) as s:
                    TaskRepository(s).heartbeat(self.version_id)
            except Exception:
                log.warning("heartbeat of %s failed", self.version_id, exc_info=True)


def _finish(ctx: WorkerContext, version_id: str, status: int, error_msg: str | None = None) -> None:
    with session_scope(ctx.sessions) as s:
        TaskRepository(s).finish(version_id, status, error_msg=error_msg)


def run_version(ctx: WorkerContext, version_id: str) -> str:
    """Run one task version; returns the claim state (``busy`` means: deliver again later)."""
    stale_before = now_ms() - int(STALE_AFTER_S * 1000)
    with session_scope(ctx.sessions) as s:
        claim = TaskRepository(s).claim(version_id, stale_before_ms=stale_before)
    if claim.state != "claimed":
        if claim.state == "done":
            with session_scope(ctx.sessions) as s:
                version = TaskRepository(s).get_version(version_id)
                if version.status == 0 and version.stop_requested:  # stopped while queued
                    TaskRepository(s).finish(version_id, STOPPED)
        log.info("task version %s not run: %s", version_id, claim.state)
        return claim.state
    if claim.deliveries > ctx.settings.max_deliveries:
        _finish(
            ctx,
            version_id,
            FAILED,
            f"gave up after {claim.deliveries - 1} attempts: the worker running this task stopped each time "
            "(out of memory or killed?)",
        )
        return "failed"

    heartbeat = _Heartbeat(ctx, version_id)
    heartbeat.start()
    started = time.monotonic()
    try:
        with session_scope(ctx.sessions) as s:
            version = TaskRepository(s).get_version(version_id)
            task = version.task
            s.expunge_all()
        job = _jobs().get(task.template_id)
        if job is None:
            raise WorkerError(f"template {task.template_id} is not available on this worker")
        outcome = job(ctx, task, version, JobControl(ctx, version_id))
    except StopRequested:
        _finish(ctx, version_id, STOPPED)
        return "stopped"
    except SoftTimeLimitExceeded:
        _finish(ctx, version_id, FAILED, f"time limit of {ctx.settings.task_time_limit_s} s exceeded")
        return "failed"
    except WorkerError as exc:
        log.warning("task version %s failed: %s", version_id, exc)
        _finish(ctx, version_id, FAILED, str(exc))
        return "failed"
    except Exception as exc:
        log.exception("task version %s crashed", version_id)
        _finish(ctx, version_id, FAILED, f"internal error: {exc.__class__.__name__}: {str(exc)[:300]}")
        return "failed"
    finally:
        heartbeat.halt.set()

    with session_scope(ctx.sessions) as s:
        repo = TaskRepository(s)
        repo.replace_results(version_id, outcome.results)
        repo.finish(
            version_id,
            COMPLETED,
            counters=outcome.counters,
            result=outcome.result,
            output_path=outcome.output_path,
        )
    log.info("task version %s completed in %.2f s", version_id, time.monotonic() - started)
    return "completed"
