"""CPU thread budgets: each worker process takes its share of the cores, no more.

Oversubscription is expensive here: with another process busy on one of two cores, torch at two
threads ran 70x slower than at one.
"""

from __future__ import annotations

import os


def thread_share(concurrency: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, concurrency))


def configure_threads(n: int) -> None:
    """Set OpenMP/BLAS/OpenCV/torch thread counts for this process (call before heavy work)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import cv2

    cv2.setNumThreads(n)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(n)
