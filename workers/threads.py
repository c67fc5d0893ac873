"""CPU thread budgets: each worker process takes its share of the cores, no more.

Oversubscription is expensive here: with another process busy on one of two cores, torch at two
threads ran 70x slower than at one.
"""

from __future__ import annotations

import os


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
