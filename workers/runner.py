"""The task runner: claim → read inputs → run the template's job → commit outputs → terminal state."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded

from storage.db.engine import session_scope
from storage.db.ids import now_ms
from storage.db.models import ProcessorTask, TaskVersion
from storage.db.repositories import COMPLETED, FAILED, STOPPED, TaskRepository
from storage.db.shards import ShardRepository
from workers.context import WorkerContext
from workers.errors import StopRequested, WorkerError
from workers.jobs.base import JobControl, JobOutcome

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0  # a running version whose heartbeat is this old lost its worker


Job = Callable[[WorkerContext, ProcessorTask, TaskVersion, JobControl], JobOutcome]


def _jobs() -> dict[str, Job]:
    from workers.jobs.analysis import run_analysis
    from workers.jobs.processing import run_processing

    return {
        "sys_data_analyse": run_analysis,
        "sys_data_validation": run_processing,
        "sys_data_cleaning": run_processing,
        "sys_data_selection": run_processing,
        "sys_data_augmentation": run_processing,
    }


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
    """A failed or stopped version keeps no per-sample records (a partial list would mislead) and no
    shards (helpers still extracting one notice at their next batch)."""
    with session_scope(ctx.sessions) as s:
        repo = TaskRepository(s)
        if repo.finish(version_id, status, error_msg=error_msg):
            repo.replace_results(version_id, [])
            ShardRepository(s).clear(version_id)  # helpers find nothing left to claim and leave


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
        if not outcome.results_written:
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
