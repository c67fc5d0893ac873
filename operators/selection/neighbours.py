"""Embedding rows kept between batches, and the near-neighbour search over them (faiss).

No N×N matrix is ever built. Up to ``EXACT_LIMIT`` rows, an exact k-NN search runs on the full
vectors. Above it, vectors are reduced with PCA and searched in a faiss index (flat up to
``FLAT_REDUCED_LIMIT`` rows, then an inverted file of ``N / LIST_SIZE`` lists with an HNSW coarse
quantizer and fp16 codes, so the cost per query stays ~log N and the total ~N log N). PCA is an
orthogonal projection of centred vectors, so a reduced distance is never larger than the full
one: searching the reduced space with the full-space radius loses no true pair; every candidate
is then decided on the full vectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 4096
FLAT_REDUCED_LIMIT = 50_000
REDUCED_DIM = 128
LIST_SIZE = 256
NPROBE = 16
TRAIN_ROWS = 65_536
QUERY_BLOCK = 16_384
RADIUS_SLACK = 1.02  # fp16 codes and float error must not push a true pair outside the radius


class RowStore:
    """Append-only float16 rows in blocks (``block_rows`` each), so growth never copies everything."""

    def __init__(self, block_rows: int = 65_536) -> None:
        self.block_rows = block_rows
        self._blocks: list[np.ndarray] = []
        self._filled = 0  # rows used in the last block
        self.dim: int | None = None

    def __len__(self) -> int:
        if not self._blocks:
            return 0
        return (len(self._blocks) - 1) * self.block_rows + self._filled

    def append(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        if rows.ndim != 2:
            raise ValueError("rows must be a 2-d array")
        if self.dim is None:
            self.dim = int(rows.shape[1])
        elif rows.shape[1] != self.dim:
            raise ValueError(f"rows have {rows.shape[1]} columns, the store holds {self.dim}")
        done = 0
        while done < len(rows):
            if not self._blocks or self._filled == self.block_rows:
                self._blocks.append(np.empty((min(1024, self.block_rows), self.dim), np.float16))
                self._filled = 0
            block = self._blocks[-1]
            if self._filled == len(block) and len(block) < self.block_rows:
                grown = np.empty((min(2 * len(block), self.block_rows), self.dim), np.float16)
                grown[: self._filled] = block[: self._filled]
                self._blocks[-1] = block = grown
            take = min(len(rows) - done, len(block) - self._filled)
            block[self._filled : self._filled + take] = rows[done : done + take]
            self._filled += take
            done += take

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The rows at ``index`` (any order), as float32."""
        index = np.asarray(index, dtype=np.int64)
        assert self.dim is not None
        out = np.empty((len(index), self.dim), np.float32)
        which, offset = np.divmod(index, self.block_rows)
        for b in np.unique(which):
            sel = which == b
            out[sel] = self._blocks[int(b)][offset[sel]]
        return out

    def blocks(self, index: np.ndarray, size: int = QUERY_BLOCK) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` for consecutive slices of ``index``."""
        for start in range(0, len(index), size):
            yield start, self.rows(index[start : start + size])


@dataclass
class Candidates:
    """Pairs of row indices (``a < b``) with their full-vector cosine, and which queries saturated.

    A query saturates when all ``k`` neighbours it was allowed came back inside the radius: it may
    have more near neighbours than were returned, so callers search those rows again.
    """

    a: np.ndarray
    b: np.ndarray
    cos: np.ndarray
    saturated: np.ndarray  # row indices


def near_pairs(
    store: RowStore, rows: np.ndarray, min_cos: float, *, k: int = 32, seed: int = 0
) -> Candidates:
    """Every pair among ``rows`` whose cosine is ≥ ``min_cos`` that a k-NN search finds.

    Each row contributes its ``k`` nearest neighbours (within the radius); rows with more than
    ``k`` are reported as saturated. The cosine is always computed on the full stored vectors.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    empty = np.empty(0, np.int64)
    if n < 2:
        return Candidates(empty, empty, np.empty(0, np.float32), empty)
    k = max(1, min(k, n - 1))
    radius2 = (2.0 - 2.0 * min_cos) * RADIUS_SLACK + 1e-4
    if n <= EXACT_LIMIT:
        qa, qb, saturated = _exact(store, rows, k, min_cos)
    else:
        qa, qb, saturated = _reduced(store, rows, k, radius2, seed)
    lo, hi = np.minimum(qa, qb), np.maximum(qa, qb)
    keys = np.unique(lo * (n + 1) + hi)
    lo, hi = keys // (n + 1), keys % (n + 1)
    a, b = rows[lo], rows[hi]
    cos = pair_cosines(store, a, b)
    keep = cos >= min_cos
    return Candidates(a[keep], b[keep], cos[keep], rows[saturated])


def pair_cosines(store: RowStore, a: np.ndarray, b: np.ndarray, block: int = 65_536) -> np.ndarray:
    """Cosine of each (a[i], b[i]) pair on the full rows (rows are unit length)."""
    out = np.empty(len(a), np.float32)
    for start in range(0, len(a), block):
        sl = slice(start, start + block)
        out[sl] = np.einsum("ij,ij->i", store.rows(a[sl]), store.rows(b[sl]))
    return np.clip(out, -1.0, 1.0)


def _exact(store: RowStore, rows: np.ndarray, k: int, min_cos: float) -> tuple[np.ndarray, ...]:
    import faiss

    vectors = store.rows(rows)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, ids = index.search(vectors, k + 1)
    return _collect(sims >= min_cos - 1e-4, ids, k)


def _reduced(store: RowStore, rows: np.ndarray, k: int, radius2: float, seed: int) -> tuple[np.ndarray, ...]:
    import faiss

    n = len(rows)
    assert store.dim is not None
    dim = min(REDUCED_DIM, store.dim)
    nlist = max(1, n // LIST_SIZE)
    rng = np.random.default_rng(seed)
    n_train = min(n, max(TRAIN_ROWS, 40 * nlist))
    train_rows = np.sort(rng.choice(rows, size=n_train, replace=False))
    pca = faiss.PCAMatrix(store.dim, dim)
    train = store.rows(train_rows)
    pca.train(train)
    reduced_train = pca.apply(train)
    del train
    if n <= FLAT_REDUCED_LIMIT:
        index = faiss.IndexFlatL2(dim)
    else:
        index = faiss.index_factory(dim, f"IVF{nlist}_HNSW32,SQfp16")
        index.cp.seed = seed
        index.train(reduced_train)
        index.nprobe = NPROBE
        faiss.downcast_index(index.quantizer).hnsw.efSearch = max(64, 2 * NPROBE)
    del reduced_train
    for _, block in store.blocks(rows):
        index.add(pca.apply(block))
    within = []
    ids_all = []
    for _, block in store.blocks(rows):
        dist, ids = index.search(pca.apply(block), k + 1)
        within.append(dist <= radius2)
        ids_all.append(ids)
    return _collect(np.concatenate(within), np.concatenate(ids_all), k)


def _collect(within: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, neighbour) position pairs inside the radius, self and padding removed; saturated queries."""
    query = np.arange(len(ids))[:, None]
    ok = within & (ids >= 0) & (ids != query)
    saturated = np.flatnonzero(ok.sum(axis=1) >= k)
    qa = np.broadcast_to(query, ids.shape)[ok]
    return qa.astype(np.int64), ids[ok].astype(np.int64), saturated
