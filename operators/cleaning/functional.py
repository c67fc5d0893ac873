"""PCC maths: prototype/criticism scores over L2-normalised embeddings, in bounded memory.

The rule (docs/operators-cleaning.md has the full statement):

1. Centre every embedding on the mean of all of them (samples and exemplars) and re-normalise: the
   pooled CNN features share one large positive direction, and cosine only separates classes once
   it is removed.
2. Score each sample by the mean cosine to its ``top_k`` nearest prototypes (``s_p``) and criticisms
   (``s_c``); score each prototype the same way against the *other* prototypes (``q``, leave one out):
   how similar exemplars of the wanted classes are to each other.
3. Cluster the samples (spherical k-means, ``n_clusters``) and smooth every score halfway towards
   its cluster's mean score, so that a sample is judged with its neighbourhood (MMD-critic keeps
   prototypes where the data is dense; a lone sample near a prototype in a foreign cluster is
   suspicious, a sample in a cluster of wanted ones is not).
4. The similarity floor is ``Q·t`` where ``Q`` is the 5 % quantile of the prototypes' own smoothed
   scores ``q`` and ``t`` is ``simlarity_threshold`` (``Q − (1−t)·|Q|`` in general, so that a
   larger threshold is always stricter). Calibrating on the exemplars makes one threshold transfer
   between datasets and class pairs; a raw cosine threshold does not.
5. Decision: a sample within ``embedding_distance`` (cosine distance of the centred embeddings) of
   an exemplar is a near copy and takes that exemplar's side. Otherwise it is kept when its smoothed
   prototype score reaches the floor and, when criticisms are given, exceeds its smoothed criticism
   score (no threshold needed: "nearer a criticism than a prototype" drops it).

Memory: embeddings live in a disk file (float16) read in chunks; the state per sample is a few
numbers; exemplar × exemplar and chunk × exemplar matrices are the only matrices. No N×N kernel.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

KEEP_SIMILAR = "similar_to_prototype"
KEEP_NEAR = "near_copy_of_prototype"
DROP_NEAR = "near_copy_of_criticism"
DROP_FLOOR = "below_similarity_floor"
DROP_CRITIC = "closer_to_criticism"
RULES = (KEEP_SIMILAR, KEEP_NEAR, DROP_NEAR, DROP_FLOOR, DROP_CRITIC)

_CHUNK_FLOATS = 8 * 1024 * 1024  # a chunk's working matrices stay around 32 MB each


class RowStore:
    """N×D float16 rows in an anonymous temporary file, written by index and read in chunks.

    Reads go through ``readinto`` (page cache), not ``mmap``, so the process's resident memory does
    not grow with N.
    """

    def __init__(self, dim: int, directory: Path | None = None) -> None:
        self.dim = dim
        self.count = 0
        self._row_bytes = dim * 2
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed in close()

    def write(self, index: int, rows: np.ndarray) -> None:
        """Write ``rows`` (k×D) at rows ``index … index+k-1`` (rows may arrive out of order)."""
        data = np.ascontiguousarray(rows, dtype=np.float16)
        self._file.seek(index * self._row_bytes)
        self._file.write(data.tobytes())
        self.count = max(self.count, index + len(data))

    def append(self, rows: np.ndarray) -> None:
        self.write(self.count, rows)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as float32."""
        n = max(0, min(stop, self.count) - start)
        out = np.zeros((n, self.dim), dtype=np.float16)
        self._file.seek(start * self._row_bytes)
        self._file.readinto(memoryview(out).cast("B"))
        return out.astype(np.float32)

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.count, rows):
            yield start, self.read(start, start + rows)

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class PccConfig:
    """The rule's knobs: the two ModelArts thresholds, the cluster count and fixed design constants."""

    simlarity_threshold: float = 0.9
    embedding_distance: float = 0.2
    n_clusters: int | None = None  # None: as many as there are prototypes (capped below N)
    top_k: int = 3
    smoothing: float = 0.5
    reference_quantile: float = 0.05
    kmeans_iterations: int = 20
    refine_passes: int = 2
    subsample: int = 20_000


@dataclass
class PccScores:
    """Per-sample raw values, smoothed scores and the verdict; arrays of length N."""

    prototype_score: np.ndarray  # smoothed top-k centred cosine to prototypes
    prototype_index: np.ndarray  # nearest prototype
    prototype_distance: np.ndarray  # 1 - centred cosine to the nearest prototype
    criticism_score: np.ndarray | None
    criticism_index: np.ndarray | None
    criticism_distance: np.ndarray | None
    cluster: np.ndarray
    floor: float
    reference: float  # Q: the reference_quantile of the prototypes' own smoothed scores
    n_clusters: int
    keep: np.ndarray
    rule: np.ndarray  # index into RULES


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _centre(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return _unit(x - mean)


def _topk_mean(sim: np.ndarray, k: int) -> np.ndarray:
    if sim.shape[1] == 0:
        return np.full(sim.shape[0], -1.0, np.float32)
    k = min(k, sim.shape[1])
    if k == 1:
        return sim.max(axis=1)
    return np.partition(sim, sim.shape[1] - k, axis=1)[:, -k:].mean(axis=1)


def chunk_rows(*widths: int) -> int:
    return max(64, _CHUNK_FLOATS // max(1, *widths))


def store_mean(store: RowStore, *extra: np.ndarray) -> np.ndarray:
    """Mean of every stored row and every row of ``extra`` (float64 accumulation)."""
    total = np.zeros(store.dim, np.float64)
    count = store.count
    for _, rows in store.chunks(chunk_rows(store.dim)):
        total += rows.sum(axis=0, dtype=np.float64)
    for rows in extra:
        total += rows.sum(axis=0, dtype=np.float64)
        count += len(rows)
    return (total / max(count, 1)).astype(np.float32)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on unit rows with the cosine distance."""
    centres = np.empty((k, x.shape[1]), np.float32)
    centres[0] = x[rng.integers(len(x))]
    dist = np.maximum(1.0 - x @ centres[0], 0.0)
    for i in range(1, k):
        total = float(dist.sum())
        pick = int(rng.choice(len(x), p=dist / total)) if total > 0 else int(rng.integers(len(x)))
        centres[i] = x[pick]
        dist = np.minimum(dist, np.maximum(1.0 - x @ centres[i], 0.0))
    return centres


def cluster_sums(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster sums of the rows of ``x`` (k×D, float64) by sort + ``reduceat``."""
    sums = np.zeros((k, x.shape[1]), np.float64)
    if len(x) == 0:
        return sums
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sums[sorted_labels[starts]] = np.add.reduceat(x[order], starts, axis=0, dtype=np.float64)
    return sums


def assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Nearest centroid (largest cosine) of every row, in row chunks so that memory stays bounded."""
    step = chunk_rows(len(centres))
    return (
        np.concatenate([np.argmax(x[i : i + step] @ centres.T, axis=1) for i in range(0, len(x), step)])
        if len(x)
        else np.zeros(0, np.int64)
    )


def _lloyd_step(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = assign(x, centres)
    return labels, cluster_sums(x, labels, len(centres)), np.bincount(labels, minlength=len(centres))


def _update(centres: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    new = centres.copy()
    filled = counts > 0
    new[filled] = _unit(sums[filled].astype(np.float32))
    return new


def spherical_kmeans(
    store: RowStore, mean: np.ndarray, k: int, rng: np.random.Generator, config: PccConfig
) -> np.ndarray:
    """k unit centroids of the centred rows: Lloyd on a subsample, then full passes when N is larger."""
    n = store.count
    take = np.sort(rng.choice(n, size=min(n, max(config.subsample, 4 * k)), replace=False))
    step = chunk_rows(store.dim, k)
    parts = []
    for start, rows in store.chunks(step):
        sel = take[(take >= start) & (take < start + len(rows))] - start
        if len(sel):
            parts.append(_centre(rows[sel], mean))
    sub = np.concatenate(parts)
    centres = _kmeans_pp(sub, k, rng) if k <= 256 else sub[rng.choice(len(sub), k, replace=False)]
    labels = None
    for _ in range(config.kmeans_iterations):
        new_labels, sums, counts = _lloyd_step(sub, centres)
        centres = _update(centres, sums, counts)
        if labels is not None and np.array_equal(labels, new_labels):
            break
        labels = new_labels
    if len(sub) < n:
        for _ in range(config.refine_passes):
            sums = np.zeros((k, store.dim), np.float64)
            counts = np.zeros(k, np.int64)
            for _, rows in store.chunks(step):
                _, s, c = _lloyd_step(_centre(rows, mean), centres)
                sums += s
                counts += c
            centres = _update(centres, sums, counts)
    return centres


def effective_clusters(config: PccConfig, n_samples: int, n_prototypes: int) -> int:
    """``n_clusters`` as given, or ``auto``: the number of prototypes, below the sample count."""
    if config.n_clusters is not None:
        return config.n_clusters
    return max(1, min(n_prototypes, n_samples - 1))


def floor_of(reference: float, threshold: float) -> float:
    """``Q·t`` for a positive reference ``Q``; ``Q − (1−t)|Q|`` keeps "larger t = stricter" for any sign."""
    return reference - (1.0 - threshold) * abs(reference)


def score(
    store: RowStore,
    prototypes: np.ndarray,
    criticisms: np.ndarray | None,
    config: PccConfig,
    rng: np.random.Generator,
) -> PccScores:
    """Scores and verdicts for every stored sample (see the module docstring for the rule)."""
    n, m = store.count, len(prototypes)
    if m < 2:
        raise ValueError("PCC needs at least 2 prototype images")
    crit = criticisms if criticisms is not None and len(criticisms) else None
    mean = store_mean(store, prototypes, *([crit] if crit is not None else []))
    p = _centre(prototypes.astype(np.float32), mean)
    c = _centre(crit.astype(np.float32), mean) if crit is not None else None
    k = effective_clusters(config, n, m)
    centres = spherical_kmeans(store, mean, k, rng, config)
    # Samples and prototypes average the same number of neighbours (a prototype has m-1 others).
    top = max(1, min(config.top_k, m - 1))

    sp = np.empty(n, np.float32)
    p_idx = np.empty(n, np.int32)
    p_dist = np.empty(n, np.float32)
    sc = np.empty(n, np.float32) if c is not None else None
    c_idx = np.empty(n, np.int32) if c is not None else None
    c_dist = np.empty(n, np.float32) if c is not None else None
    labels = np.empty(n, np.int32)
    step = chunk_rows(store.dim, m, k, len(c) if c is not None else 0)
    for start, rows in store.chunks(step):
        x = _centre(rows, mean)
        stop = start + len(x)
        sim = x @ p.T
        sp[start:stop] = _topk_mean(sim, top)
        p_idx[start:stop] = np.argmax(sim, axis=1)
        p_dist[start:stop] = 1.0 - sim.max(axis=1)
        if c is not None:
            csim = x @ c.T
            sc[start:stop] = _topk_mean(csim, top)  # type: ignore[index]
            c_idx[start:stop] = np.argmax(csim, axis=1)  # type: ignore[index]
            c_dist[start:stop] = 1.0 - csim.max(axis=1)  # type: ignore[index]
        labels[start:stop] = assign(x, centres)

    # Prototypes against the other prototypes (leave one out), in chunks of prototypes.
    q = np.empty(m, np.float32)
    qc = np.empty(m, np.float32) if c is not None else None
    for start in range(0, m, chunk_rows(m)):
        block = p[start : start + chunk_rows(m)] @ p.T
        rows = np.arange(len(block))
        block[rows, start + rows] = -np.inf
        q[start : start + len(block)] = _topk_mean(block, top)
        if c is not None:
            qc[start : start + len(block)] = _topk_mean(p[start : start + len(block)] @ c.T, top)  # type: ignore[index]
    p_labels = assign(p, centres)

    def smooth(sample_values: np.ndarray, proto_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sums = np.bincount(labels, sample_values, k) + np.bincount(p_labels, proto_values, k)
        counts = np.bincount(labels, minlength=k) + np.bincount(p_labels, minlength=k)
        cluster_mean = (sums / np.maximum(counts, 1)).astype(np.float32)
        w = config.smoothing
        return (1 - w) * sample_values + w * cluster_mean[labels], (1 - w) * proto_values + w * cluster_mean[
            p_labels
        ]

    sp_s, q_s = smooth(sp, q)
    sc_s = smooth(sc, qc)[0] if sc is not None and qc is not None else None
    reference = float(np.quantile(q_s, config.reference_quantile))
    floor = floor_of(reference, config.simlarity_threshold)
    keep, rule = decide(sp_s, p_dist, sc_s, c_dist, floor, config.embedding_distance)
    return PccScores(sp_s, p_idx, p_dist, sc_s, c_idx, c_dist, labels, floor, reference, k, keep, rule)


def decide(
    prototype_score: np.ndarray,
    prototype_distance: np.ndarray,
    criticism_score: np.ndarray | None,
    criticism_distance: np.ndarray | None,
    floor: float,
    embedding_distance: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(keep, rule index) per sample; a pure function of the scores, so thresholds can change freely."""
    n = len(prototype_score)
    rule = np.full(n, RULES.index(KEEP_SIMILAR), np.int8)
    below = prototype_score < floor
    rule[below] = RULES.index(DROP_FLOOR)
    if criticism_score is not None:
        closer = ~below & (criticism_score >= prototype_score)
        rule[closer] = RULES.index(DROP_CRITIC)
    c_dist = criticism_distance if criticism_distance is not None else np.full(n, np.inf, np.float32)
    near = (prototype_distance <= embedding_distance) | (c_dist <= embedding_distance)
    near_p = near & (prototype_distance <= c_dist)
    rule[near_p] = RULES.index(KEEP_NEAR)
    rule[near & ~near_p] = RULES.index(DROP_NEAR)
    keep = (rule == RULES.index(KEEP_SIMILAR)) | (rule == RULES.index(KEEP_NEAR))
    return keep, rule


def plain_max_cosine(samples: np.ndarray, prototypes: np.ndarray, threshold: float) -> np.ndarray:
    """The baseline the benches compare against: keep when the raw cosine to some prototype ≥ threshold."""
    best = np.full(len(samples), -math.inf, np.float32)
    for start in range(0, len(samples), chunk_rows(len(prototypes))):
        part = samples[start : start + chunk_rows(len(prototypes))]
        best[start : start + len(part)] = (part @ prototypes.T).max(axis=1)
    return best >= threshold
