"""Embedding cache keyed by image content and model, so that a re-run does not recompute embeddings.

One SQLite file (``{cache_dir}/embeddings.sqlite3``, WAL mode, so that several worker processes can
share it) holds float32 rows keyed by (model id, sha256 of the image). The content key is the
sha256 of the original file bytes while the pixels are those bytes decoded, else of the pixels
themselves (an earlier operator changed them). A cache that cannot be opened or written is turned
off with a warning: it only ever saves time, it never fails a task. Nothing is evicted; deleting the
file is always safe.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from operators.sample import Sample

log = logging.getLogger(__name__)

FILE_NAME = "embeddings.sqlite3"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS embeddings ("
    " model TEXT NOT NULL, digest BLOB NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, digest)"
    ") WITHOUT ROWID"
)
_MAX_VARS = 500


def content_key(sample: Sample) -> bytes:
    """sha256 of what the embedder will see: the original bytes, or the pixels once they changed."""
    if sample.data is not None and not sample.pixels_changed:
        return hashlib.sha256(sample.data).digest()
    assert sample.pixels is not None, "a sample without bytes must carry pixels"
    h = hashlib.sha256(repr(sample.pixels.shape).encode())
    h.update(np.ascontiguousarray(sample.pixels).tobytes())
    return h.digest()


class EmbeddingCache:
    """get/put of float32 embedding rows keyed by (model id, content digest)."""

    def __init__(self, directory: Path, model_id: str, dim: int) -> None:
        self.model_id, self.dim = model_id, dim
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(directory / FILE_NAME, timeout=30, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.commit()
            self._db = db
        except (OSError, sqlite3.Error) as exc:
            log.warning("embedding cache in %s disabled: %s", directory, exc)

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def get_many(self, digests: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached rows among ``digests`` (missing ones are simply absent)."""
        found: dict[bytes, np.ndarray] = {}
        if self._db is None or not digests:
            return found
        try:
            with self._lock:
                for start in range(0, len(digests), _MAX_VARS):
                    part = list(digests[start : start + _MAX_VARS])
                    marks = ",".join("?" * len(part))
                    rows = self._db.execute(
                        f"SELECT digest, vec FROM embeddings WHERE model = ? AND digest IN ({marks})",
                        [self.model_id, *part],
                    ).fetchall()
                    for digest, blob in rows:
                        vec = np.frombuffer(blob, dtype=np.float32)
                        if vec.shape == (self.dim,):
                            found[bytes(digest)] = vec
        except sqlite3.Error as exc:
            self._disable(exc)
        self.hits += len(found)
        self.misses += len(set(digests)) - len(found)
        return found

    def put_many(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        if self._db is None:
            return
        rows = [(self.model_id, d, np.asarray(v, np.float32).tobytes()) for d, v in items]
        if not rows:
            return
        try:
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)
                self._db.commit()
        except sqlite3.Error as exc:
            self._disable(exc)

    def _disable(self, exc: Exception) -> None:
        log.warning("embedding cache disabled after an error: %s", exc)
        self.close()

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            finally:
                self._db = None
