"""What every job returns, and how it reports progress and notices a stop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from storage.db.engine import session_scope
from storage.db.models import SampleResult, TaskVersion
from storage.db.repositories import TaskRepository
from workers.context import WorkerContext
from workers.errors import StopRequested


@dataclass
class JobOutcome:
    """What a job produced; written with the terminal state in one transaction."""

    counters: dict[str, int]
    results: list[SampleResult] = field(default_factory=list)
    result: dict[str, Any] | None = None
    output_path: str | None = None
    results_written: bool = False  # the job streamed its records through a ResultSink


class ResultSink:
    """Per-sample records written in chunks while a job runs, so memory stays flat on large inputs.

    A run first clears what an earlier attempt of the same version left; the records only become
    visible through the API once the version completes. A sample id seen twice (a manifest listing
    the same source twice) keeps its first record.
    """

    def __init__(self, ctx: WorkerContext, version_id: str, chunk: int = 500) -> None:
        self.ctx, self.version_id, self.chunk = ctx, version_id, chunk
        self._buffer: list[SampleResult] = []
        self._seen: set[str] = set()
        with session_scope(ctx.sessions) as s:
            repo = TaskRepository(s)
            repo.replace_results(version_id, [])
            self._live = s.get(TaskVersion, version_id) is not None

    def add(self, record: SampleResult) -> None:
        if record.sample_id in self._seen or not self._live:  # not live: deleted under the worker
            return
        self._seen.add(record.sample_id)
        record.task_version_id = self.version_id
        self._buffer.append(record)
        if len(self._buffer) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        with session_scope(self.ctx.sessions) as s:
            if s.get(TaskVersion, self.version_id) is None:
                self._live = False  # deleted while running: its records have nowhere to go
            else:
                s.add_all(self._buffer)
        self._buffer = []


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
