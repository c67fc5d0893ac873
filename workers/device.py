"""Pick the compute device inside the worker process (CUDA is never initialised in the Celery parent)."""

from __future__ import annotations


def resolve_device(setting: str) -> str:
    if setting == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        raise RuntimeError("DSPROC_DEVICE=cuda but no CUDA device is available to this worker")
    return "cpu"
