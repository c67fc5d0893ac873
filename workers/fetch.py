"""Fetch sample bytes from object storage, a batch at a time, in parallel (latency-bound on S3)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from storage.errors import StorageError
from storage.manifest import ManifestSample
from storage.objectstore.base import ObjectStore
from storage.uris import parse_uri

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Fetched:
    sample: ManifestSample
    data: bytes | None
    error: str | None = None


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def one_ahead(submitted: Iterable[list[Future[R]]]) -> Iterator[list[R]]:
    """Results of batches of futures, in order, each batch submitted (by iterating ``submitted``)
    before the previous one is handed out: the next batch works while the caller works on this one.
    What a caller that stops early leaves pending is cancelled."""
    pending: list[Future[R]] | None = None  # an empty batch is a batch too
    try:
        for futures in submitted:
            if pending is not None:
                yield [f.result() for f in pending]
            pending = futures
        if pending is not None:
            done, pending = pending, None
            yield [f.result() for f in done]
    finally:
        for f in pending or ():
            f.cancel()


def _fetch_one(store: ObjectStore, sample: ManifestSample, max_bytes: int) -> Fetched:
    try:
        ref = parse_uri(sample.source)
        return Fetched(sample, store.get_bytes(ref.bucket, ref.key, max_bytes=max_bytes))
    except StorageError as exc:
        return Fetched(sample, None, f"cannot read {sample.source}: {exc}")


class Fetcher:
    """A small thread pool that turns a batch of samples into their bytes (or a per-sample error)."""

    def __init__(self, store: ObjectStore, max_bytes: int, threads: int = 8) -> None:
        self.store, self.max_bytes = store, max_bytes
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch")

    def fetch(self, batch: list[ManifestSample]) -> list[Fetched]:
        return list(self.pool.map(lambda s: _fetch_one(self.store, s, self.max_bytes), batch))

    def stream(self, batches: Iterable[list[ManifestSample]]) -> Iterator[list[Fetched]]:
        """Fetched batches in order, the next one downloading while the caller works on this one."""
        submitted = (
            [self.pool.submit(_fetch_one, self.store, s, self.max_bytes) for s in b] for b in batches
        )
        return one_ahead(submitted)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def fetched_batches(
    fetcher: Fetcher, samples: Iterable[ManifestSample], size: int
) -> Iterator[list[tuple[ManifestSample, Fetched, Fetched | None]]]:
    """Batches of (sample, its image, its VOC file or None), downloading one request ahead of the
    caller (``Fetcher.stream``): a batch's images, then its VOC files."""

    def requests() -> Iterator[list[ManifestSample]]:
        for batch in batched(samples, size):
            yield batch
            yield [ManifestSample(source=ms.annotation_loc) for ms in batch if ms.annotation_loc]

    stream = fetcher.stream(requests())
    for images in stream:
        xml_files = iter(next(stream))
        batch = [f.sample for f in images]
        xmls = [next(xml_files) if ms.annotation_loc else None for ms in batch]
        yield list(zip(batch, images, xmls, strict=True))
