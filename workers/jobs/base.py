"""What every job returns, and how it reports progress and notices a stop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from storage.db.engine import session_scope
from storage.db.models import SampleResult
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
