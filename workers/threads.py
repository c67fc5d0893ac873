"""CPU thread budgets: each worker process takes its share of the cores, no more.

Oversubscription is expensive here: with another process busy on one of two cores, torch at two
threads ran 70x slower than at one.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_budget: int | None = None
_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid that made it, pool)


def passive_openmp_waits() -> None:
    """Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, unless set).

    Spinning threads steal the core the other thread needs: on a busy 2-core machine torch at two
    threads ran up to 5× slower than at one (bench/bench_dedup.py). Read once, when OpenMP starts:
    call before torch (or any OpenMP library) is imported.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def thread_share(concurrency: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, concurrency))


def configure_threads(n: int) -> None:
    """Set OpenMP/BLAS/OpenCV/torch thread counts for this process (call before heavy work)."""
    global _budget
    _budget = max(1, n)
    passive_openmp_waits()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import cv2

    cv2.setNumThreads(n)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(n)


def thread_budget() -> int:
    """The threads this process may keep busy: what ``configure_threads`` set, else every core."""
    return _budget or os.cpu_count() or 1


def cpu_pool() -> ThreadPoolExecutor:
    """The process's pool for CPU work that releases the GIL (image decoding), ``thread_budget``
    threads. Made on first use, and again in a forked child (threads do not survive a fork)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(thread_budget(), thread_name_prefix="cpu"))
        return _pool[1]
