"""RRD (de-redundancy): keep ``sample_ratio`` of the samples by dropping the most redundant ones.

Every sample is embedded (EfficientNet-Lite0). The embeddings are clustered with k-means (seeded
from the run, so a retried run drops the same samples). A sample's redundancy is the cosine to its
nearest *surviving* neighbour inside its own cluster; samples are removed one at a time, always the
most redundant one, and the neighbours of a removed sample are re-scored. Removal therefore thins
the densest regions first (tight groups of near-copies go before anything else) and spreads out
as they thin. Each cluster keeps at least one sample while any cluster still has two, so rare
modes survive; only when the ratio asks for fewer samples than clusters are whole clusters
dropped, the ones whose centroid is closest to another centroid first.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from operators.errors import InvalidParamsError
from operators.kinds import Features, OperatorEnv, SelectionOperator
from operators.params import ClusterCount, OperatorParams
from operators.registry import register
from operators.sample import Sample, Verdict
from operators.selection.neighbours import RowStore, near_pairs

NEIGHBOURS = 16
KMEANS_ITERATIONS = 20
KMEANS_POINTS_PER_CENTROID = 256
SINGLETON_OFFSET = 3.0  # last members of a cluster rank below every in-cluster score (cos ≥ -1)


def auto_clusters(n: int) -> int:
    """``n_clusters=auto``: round(√(n/2)), at least 1 and below ``n``."""
    return max(1, min(n - 1, round(math.sqrt(n / 2)))) if n > 1 else 1


def keep_count(n: int, ratio: float) -> int:
    """How many samples ``sample_ratio`` keeps: ratio × n rounded half up, at least 1."""
    return max(1, min(n, math.floor(ratio * n + 0.5 + 1e-9)))


def kmeans(store: RowStore, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (faiss) on at most ``256·k`` sampled rows; returns (labels, centroids)."""
    import faiss

    n = len(store)
    assert store.dim is not None
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, KMEANS_POINTS_PER_CENTROID * k), replace=False))
    km = faiss.Kmeans(
        store.dim,
        k,
        niter=KMEANS_ITERATIONS,
        seed=int(seed % (2**31 - 1)),
        spherical=True,
        max_points_per_centroid=KMEANS_POINTS_PER_CENTROID,
        verbose=False,
    )
    km.train(store.rows(sample))
    index = faiss.IndexFlatIP(store.dim)
    index.add(km.centroids)
    labels = np.empty(n, np.int64)
    everything = np.arange(n)
    for start, block in store.blocks(everything):
        labels[start : start + len(block)] = index.search(block, 1)[1][:, 0]
    return labels, np.asarray(km.centroids, np.float32)


@dataclass
class Removal:
    """One removed sample: its nearest surviving neighbour at that moment and their cosine."""

    index: int
    nearest: int
    cos: float
    step: int


@dataclass
class _Graph:
    """In-cluster neighbour lists (best first) with cosines."""

    neighbours: list[np.ndarray] = field(default_factory=list)
    cosines: list[np.ndarray] = field(default_factory=list)


def _cluster_graph(store: RowStore, labels: np.ndarray, k: int, seed: int) -> _Graph:
    """Each row's nearest cluster-mates (k-NN inside its cluster, made symmetric), best first."""
    n = len(labels)
    parts_a, parts_b, parts_c = [], [], []
    for cluster in np.unique(labels).tolist():
        members = np.flatnonzero(labels == cluster)
        if len(members) < 2:
            continue
        found = near_pairs(store, members, -1.0, k=k, seed=seed + cluster)
        parts_a.append(found.a)
        parts_b.append(found.b)
        parts_c.append(found.cos)
    a = np.concatenate([*parts_a, np.empty(0, np.int64)])
    b = np.concatenate([*parts_b, np.empty(0, np.int64)])
    c = np.concatenate([*parts_c, np.empty(0, np.float32)])
    src, dst, cos = np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([c, c])
    order = np.lexsort((dst, -cos, src))
    src, dst, cos = src[order], dst[order], cos[order]
    bounds = np.searchsorted(src, np.arange(1, n))
    return _Graph(list(np.split(dst, bounds)), list(np.split(cos.astype(np.float32), bounds)))


def remove_redundant(
    store: RowStore, labels: np.ndarray, centroids: np.ndarray, n_remove: int, order: np.ndarray, seed: int
) -> list[Removal]:
    """Remove ``n_remove`` rows, most redundant first (see the module docstring)."""
    n = len(labels)
    graph = _cluster_graph(store, labels, NEIGHBOURS, seed)
    alive = np.ones(n, bool)
    cluster_alive = np.bincount(labels, minlength=len(centroids))
    density = np.array([float(c[:NEIGHBOURS].mean()) if len(c) else -1.0 for c in graph.cosines])
    centroid_sim = _nearest_centroid_similarity(centroids, cluster_alive > 0)
    cursor = np.zeros(n, np.int64)  # position in each neighbour list of the current nearest

    def score(u: int) -> tuple[float, int]:
        """(redundancy, nearest alive neighbour or -1) of u."""
        nb, cs = graph.neighbours[u], graph.cosines[u]
        while cursor[u] < len(nb) and not alive[nb[cursor[u]]]:
            cursor[u] += 1
        if cursor[u] < len(nb):
            return float(cs[cursor[u]]), int(nb[cursor[u]])
        if cluster_alive[labels[u]] > 1:  # the list ran out: search the surviving cluster-mates
            mates = np.flatnonzero(alive & (labels == labels[u]))
            mates = mates[mates != u]
            cos = store.rows(mates) @ store.rows(np.array([u]))[0]
            best = int(np.argmax(cos))
            graph.neighbours[u] = mates[np.argsort(-cos, kind="stable")]
            graph.cosines[u] = np.sort(cos)[::-1].astype(np.float32)
            cursor[u] = 0
            return float(cos[best]), int(mates[best])
        return float(centroid_sim[labels[u]]) - SINGLETON_OFFSET, -1

    def entry(u: int) -> tuple[float, float, int, int, int]:
        s, v = score(u)
        # most redundant first; ties: denser neighbourhood, then later in the manifest
        return (-s, -density[u], -int(order[u]), u, v)

    heap = [entry(u) for u in range(n)]
    heapq.heapify(heap)
    removed: list[Removal] = []
    while heap and len(removed) < n_remove:
        neg_s, _, _, u, v = heapq.heappop(heap)
        if not alive[u]:
            continue
        if v >= 0 and not alive[v]:
            heapq.heappush(heap, entry(u))
            continue
        if v < 0 and cluster_alive[labels[u]] > 1:  # a cluster-mate appeared in a re-scan
            heapq.heappush(heap, entry(u))
            continue
        alive[u] = False
        cluster_alive[labels[u]] -= 1
        removed.append(Removal(u, v, -neg_s if v >= 0 else float("nan"), len(removed)))
    return removed


def _nearest_centroid_similarity(centroids: np.ndarray, present: np.ndarray) -> np.ndarray:
    """For each centroid, the cosine to the closest other centroid (-1 when alone)."""
    k = len(centroids)
    if k < 2:
        return np.full(k, -1.0)
    unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    out = np.full(k, -1.0)
    for start in range(0, k, 1024):  # k × 1024 blocks: clusters are few compared with samples
        sims = unit[start : start + 1024] @ unit.T
        for i in range(len(sims)):
            sims[i, start + i] = -np.inf
        sims[:, ~present] = -np.inf
        out[start : start + 1024] = np.maximum(sims.max(axis=1), -1.0)
    return out


@register
class RRD(SelectionOperator):
    """De-redundancy to ``sample_ratio`` of the samples."""

    name = "RRD"
    template_id = "sys_data_selection"

    class Params(OperatorParams):
        sample_ratio: float = Field(0.9, gt=0.0, le=1.0)
        n_clusters: ClusterCount = "auto"

    params: Params
    shardable = True

    def begin(self, env: OperatorEnv) -> None:
        super().begin(env)
        self._ids: list[str] = []
        self._sources: list[str] = []
        self._order: list[int] = []
        self._embeddings = RowStore()

    def extract(self, batch: list[Sample]) -> Features:
        live = [s for s in batch if s.pixels is not None]
        if not live:
            return {"ids": np.array([], dtype=str)}
        from operators.embeddings import get_embedder

        images = [s.pixels for s in live]
        rows = np.asarray(get_embedder(self.env.device).embed(images, batch_size=len(images)), np.float32)
        return {
            "ids": np.array([s.sample_id for s in live], dtype=str),
            "sources": np.array([s.source for s in live], dtype=str),
            "order": np.array([s.order for s in live], np.int64),
            "embeddings": rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12),
        }

    def absorb(self, features: Features) -> None:
        if len(features["ids"]) == 0:
            return
        self._embeddings.append(features["embeddings"])
        self._ids += features["ids"].tolist()
        self._sources += features["sources"].tolist()
        self._order += features["order"].tolist()

    def clusters_for(self, n: int) -> int:
        """The cluster count for ``n`` samples; an explicit one must be below ``n`` (ModelArts.4622)."""
        wanted = self.params.n_clusters
        if wanted == "auto":
            return auto_clusters(n)
        assert isinstance(wanted, int)
        if wanted >= n:
            raise InvalidParamsError(
                f"ModelArts.4622: n_clusters ({wanted}) must be an integer smaller than the number of "
                f"samples ({n}), or 'auto'"
            )
        return wanted

    def decide(self) -> dict[str, Verdict]:
        n = len(self._ids)
        if n == 0:
            return {}
        k = self.clusters_for(n)
        keep = keep_count(n, self.params.sample_ratio)
        if keep >= n:  # sample_ratio 1, or a single sample: nothing to drop
            return {}
        labels, centroids = kmeans(self._embeddings, k, self.env.seed)
        sizes = np.bincount(labels, minlength=k)
        order = np.asarray(self._order, np.int64)
        removed = remove_redundant(self._embeddings, labels, centroids, n - keep, order, self.env.seed)
        ratio = self.params.sample_ratio
        verdicts = {
            self._ids[i]: Verdict(
                True, {"reason": "kept", "cluster": int(labels[i]), "cluster_size": int(sizes[labels[i]])}
            )
            for i in range(n)
        }
        for r in removed:
            evidence: dict[str, Any] = {
                "reason": "redundant",
                "cluster": int(labels[r.index]),
                "cluster_size": int(sizes[labels[r.index]]),
                "removal_rank": r.step + 1,
                "sample_ratio": ratio,
                "kept_count": keep,
                "total_count": n,
            }
            if r.nearest >= 0:
                evidence["nearest"] = {"sample_id": self._ids[r.nearest], "source": self._sources[r.nearest]}
                evidence["similarity"] = round((1.0 + r.cos) / 2.0, 4)
            else:
                evidence["note"] = (
                    "last sample of its cluster; the ratio asked for fewer samples than clusters"
                )
            verdicts[self._ids[r.index]] = Verdict(False, evidence)
        return verdicts
