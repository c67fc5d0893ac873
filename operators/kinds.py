"""The two kinds of processing operator and the environment the worker hands them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from operators.registry import Operator
from operators.sample import Outcome, Sample, Verdict


@dataclass
class OperatorEnv:
    """What an operator may ask of the outside world, without importing storage.

    ``read_bytes`` takes an object URI (``obs://``, ``s3://``, ``/bucket/key``) or, for checkpoints,
    a local file path. ``list_images`` yields the decoded images of a folder (exemplars).
    """

    device: str = "cpu"
    seed: int = 0
    batch_size: int = 32
    sample_count: int | None = None
    cache_dir: Path | None = None
    read_bytes: Callable[[str], bytes] | None = None
    list_images: Callable[[str], Iterator[Sample]] | None = None


class SampleOperator(Operator):
    """Transforms one sample at a time (validation, augmentation); must be deterministic given ``rng``."""

    def begin(self, env: OperatorEnv) -> None:
        """Called once per run before the first sample."""

    def apply(self, sample: Sample, rng: np.random.Generator) -> Outcome:
        raise NotImplementedError


Features = dict[str, np.ndarray]
"""Per-batch features of a selection operator: named arrays (no objects), so they can be stored."""


class SelectionOperator(Operator):
    """Keeps or drops samples by looking at all of them (dedup, cleaning, de-redundancy).

    The worker calls ``begin``, then ``observe`` for every batch of (already pre-processed) samples,
    then ``decide`` once; it never holds more than a batch of images in memory, so an operator that
    needs global state keeps compact features, not pixels.

    A ``shardable`` operator splits ``observe`` into ``extract`` (the expensive per-batch work:
    embeddings, hashes, measurements; no global state needed) and ``absorb`` (cheap bookkeeping).
    Then several workers may each ``begin_extract`` a copy and ``extract`` a shard of the input,
    and the coordinating worker ``absorb``s every batch's features in input order, exactly as
    ``observe`` would have.
    """

    shardable: ClassVar[bool] = False

    def begin(self, env: OperatorEnv) -> None:
        self.env = env

    def begin_extract(self, env: OperatorEnv) -> None:
        """Set-up for a copy that only extracts (a shard worker); the full ``begin`` by default."""
        self.begin(env)

    def end_extract(self) -> None:
        """Release what ``begin_extract`` opened (a shard worker never calls ``decide``)."""

    def observe(self, batch: list[Sample]) -> None:
        if not self.shardable:
            raise NotImplementedError
        self.absorb(self.extract(batch))

    def extract(self, batch: list[Sample]) -> Features:
        raise NotImplementedError

    def absorb(self, features: Features) -> None:
        raise NotImplementedError

    def decide(self) -> dict[str, Verdict]:
        """Verdicts keyed by ``sample_id``; a sample without a verdict is kept."""
        raise NotImplementedError
