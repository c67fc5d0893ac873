"""Embedding rows kept between batches, and the near-neighbour search over them (faiss).

No N×N matrix is ever built. Up to ``EXACT_LIMIT`` rows, an exact k-NN search runs on the full
vectors. Above it, each vector is reduced to 63 PCA coordinates plus the norm of what PCA left out
(``reduce``): the reduced distance is never larger than the full one, so searching the reduced
space with the full-space radius loses no true pair. Up to ``FLAT_REDUCED_LIMIT`` rows the reduced
vectors are searched exactly; above, an inverted file of ``N / LIST_SIZE`` lists with an HNSW coarse
quantizer (``NPROBE`` lists per query, so the cost per query grows ~log N and the total ~N log N)
holds 4-bit PQ fast-scan codes that shortlist candidates, re-ranked on exact reduced distances.
Every candidate pair is then decided on its full stored vectors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

EXACT_LIMIT = 4096
FLAT_REDUCED_LIMIT = 50_000
REDUCED_DIM = 64
LIST_SIZE = 256
NPROBE = 12
PCA_ROWS = 20_000
TRAIN_PER_LIST = 30
KMEANS_ITERATIONS = 10
QUERY_BLOCK = 8192
SHORTLIST = 2  # the PQ search returns this many times k+1 candidates for exact re-ranking
FAST_SCAN = True  # False: exact (flat) lists instead of PQ fast-scan + re-ranking
RADIUS_SLACK = 1.02  # float error must not push a true pair outside the radius


class RowStore:
    """Append-only rows (float16 unless told otherwise) in blocks of ``block_rows``, so growth never
    copies everything; ``rows`` reads them back as float32."""

    def __init__(self, block_rows: int = 65_536, dtype: type = np.float16) -> None:
        self.block_rows = block_rows
        self.dtype = dtype
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
                self._blocks.append(np.empty((min(1024, self.block_rows), self.dim), self.dtype))
                self._filled = 0
            block = self._blocks[-1]
            if self._filled == len(block) and len(block) < self.block_rows:
                grown = np.empty((min(2 * len(block), self.block_rows), self.dim), self.dtype)
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
    """Pairs of row indices (``a < b``) with their full-vector cosine, and which rows saturated.

    A row saturates when its k-th neighbour is still close (see ``near_pairs``): it may have more
    near neighbours than were returned, so callers search those rows again.
    """

    a: np.ndarray
    b: np.ndarray
    cos: np.ndarray
    saturated: np.ndarray  # row indices


def near_pairs(
    store: RowStore,
    rows: np.ndarray,
    min_cos: float,
    *,
    k: int = 16,
    seed: int = 0,
    saturation_cos: float | None = None,
) -> Candidates:
    """Every pair among ``rows`` whose cosine is ≥ ``min_cos`` that a k-NN search finds.

    Each row contributes its ``k`` nearest neighbours inside the radius. A row whose k-th
    neighbour still has a full cosine ≥ ``saturation_cos`` (default ``min_cos``) may have more
    such neighbours than were returned: it is reported as saturated. Cosines are always computed
    on the full stored vectors.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    empty = np.empty(0, np.int64)
    if n < 2:
        return Candidates(empty, empty, np.empty(0, np.float32), empty)
    k = max(1, min(k, n - 1))
    radius2 = (2.0 - 2.0 * min_cos) * RADIUS_SLACK + 1e-4
    if n <= EXACT_LIMIT:
        qa, qb, last = _exact(store, rows, k, min_cos)
    else:
        qa, qb, last = _reduced(store, rows, k, radius2, seed)
    full = np.flatnonzero(last >= 0)
    last_cos = pair_cosines(store, rows[full], rows[last[full]])
    saturated = rows[full[last_cos >= (min_cos if saturation_cos is None else saturation_cos)]]
    lo, hi = np.minimum(qa, qb), np.maximum(qa, qb)
    keys = np.unique(lo * (n + 1) + hi)
    lo, hi = keys // (n + 1), keys % (n + 1)
    a, b = rows[lo], rows[hi]
    cos = pair_cosines(store, a, b)
    keep = cos >= min_cos
    return Candidates(a[keep], b[keep], cos[keep], saturated)


def pair_cosines(store: RowStore, a: np.ndarray, b: np.ndarray, block: int = 8192) -> np.ndarray:
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


def pca_basis(store: RowStore, rows: np.ndarray, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the top ``dim`` principal directions (D×dim, orthonormal) from a seeded row sample."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(rows, size=min(len(rows), PCA_ROWS), replace=False))
    x = store.rows(sample)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    x -= mean
    _, vectors = np.linalg.eigh((x.T @ x).astype(np.float64))
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :dim], dtype=np.float32)
    return mean, basis


def reduce(block: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """[P(x − μ), ‖(I − PPᵀ)(x − μ)‖]: the PCA coordinates plus the norm of what PCA left out.

    For any two rows the squared distance between their reduced vectors is
    ‖P(x−y)‖² + (‖r_x‖ − ‖r_y‖)² ≤ ‖P(x−y)‖² + ‖r_x − r_y‖² = ‖x − y‖², a lower bound tighter than the
    PCA part alone (the residual norms of unrelated images differ).
    """
    centred = block - mean
    coords = centred @ basis
    residual = np.einsum("ij,ij->i", centred, centred) - np.einsum("ij,ij->i", coords, coords)
    return np.hstack([coords, np.sqrt(np.maximum(residual, 0.0))[:, None]]).astype(np.float32)


def _reduced(store: RowStore, rows: np.ndarray, k: int, radius2: float, seed: int) -> tuple[np.ndarray, ...]:
    import faiss

    n = len(rows)
    assert store.dim is not None
    dim = min(REDUCED_DIM, store.dim - 1)
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        clock.append(time.perf_counter())
        log.debug("near_pairs n=%d %s: %.2f s", n, stage, clock[-1] - clock[-2])

    mean, basis = pca_basis(store, rows, dim - 1, seed)
    lap("pca")
    reduced = np.empty((n, dim), np.float32)  # n × 64 floats: 256 MB for a million rows
    for start, block in store.blocks(rows):
        reduced[start : start + len(block)] = reduce(block, mean, basis)
    lap("project")
    if n <= FLAT_REDUCED_LIMIT:
        index = faiss.IndexFlatL2(dim)
        shortlist = k + 1
    else:
        # 4-bit PQ fast-scan lists rank candidates cheaply; exact reduced distances re-rank them
        nlist = max(1, n // LIST_SIZE)
        codes = f"PQ{dim // 2}x4fs" if FAST_SCAN else "Flat"
        index = faiss.index_factory(dim, f"IVF{nlist}_HNSW32,{codes}")
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = int(seed % (2**31 - 1))
        ivf.cp.niter = KMEANS_ITERATIONS
        ivf.cp.min_points_per_centroid = 1  # the sample below is deliberately small
        if FAST_SCAN:
            fast = faiss.downcast_index(index)
            fast.by_residual = False  # one lookup table per query instead of one per probed list
            fast.pq.cp.niter = KMEANS_ITERATIONS
        rng = np.random.default_rng(seed + 1)
        train = np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False))
        index.train(reduced[train])
        ivf.nprobe = NPROBE
        faiss.downcast_index(ivf.quantizer).hnsw.efSearch = max(32, 2 * NPROBE)
        shortlist = SHORTLIST * (k + 1) if FAST_SCAN else k + 1
        lap("train")
    index.add(reduced)
    lap("add")
    within, found = [], []
    for start in range(0, n, QUERY_BLOCK):
        queries = reduced[start : start + QUERY_BLOCK]
        if shortlist > k + 1:
            _, ids = index.search(queries, shortlist)
            gathered = reduced[np.maximum(ids, 0)]  # re-rank the shortlist on exact reduced distances
            exact = np.einsum("qkd,qkd->qk", gathered - queries[:, None], gathered - queries[:, None])
            exact[ids < 0] = np.inf
            best = np.argsort(exact, axis=1, kind="stable")[:, : k + 1]
            ids = np.take_along_axis(ids, best, axis=1)
            dist = np.take_along_axis(exact, best, axis=1)
        else:
            dist, ids = index.search(queries, k + 1)
        within.append(dist <= radius2)
        found.append(ids)
    lap("search")
    del reduced, index
    return _collect(np.concatenate(within), np.concatenate(found), k)


def _collect(within: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, neighbour) position pairs inside the radius, self and padding removed, and for each
    query its k-th neighbour inside the radius (-1 when it had fewer)."""
    query = np.arange(len(ids))[:, None]
    ok = within & (ids >= 0) & (ids != query)
    count = ok.sum(axis=1)
    kth = np.full(len(ids), -1, np.int64)
    full = np.flatnonzero(count >= k)
    if len(full):
        # position of the k-th valid neighbour in each full row
        position = np.argmax(np.cumsum(ok[full], axis=1) >= k, axis=1)
        kth[full] = ids[full, position]
    qa = np.broadcast_to(query, ids.shape)[ok]
    return qa.astype(np.int64), ids[ok].astype(np.int64), kth
