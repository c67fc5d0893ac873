"""An in-process Celery worker on the memory transport: the embedded default, same task code path."""

from __future__ import annotations

import threading

from celery import Celery
from celery.worker import WorkController


class EmbeddedWorker:
    """Runs a solo-pool Celery worker in a daemon thread of the current process."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.controller = WorkController(
            app=app,
            concurrency=1,
            pool="solo",
            hostname="dsproc-embedded@localhost",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="INFO",
        )
        self.thread = threading.Thread(target=self.controller.start, daemon=True, name="dsproc-worker")

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.controller.stop(in_sighandler=False)
        self.thread.join(timeout)
