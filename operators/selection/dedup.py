"""SimDeduplication: remove exact and near-duplicate images, keeping the best copy of each.

Stage 1 (exact): samples whose content hash is equal (the original file bytes, or the pixels when
an earlier operator changed them) are one content; only its first occurrence is embedded.
Stage 2 (near): each distinct content gets an EfficientNet-Lite0 embedding (of a 176 px square,
``features.EMBED_SIDE``) and a 32×32 luma thumbnail. A faiss k-NN search proposes pairs whose
embedding cosine could reach the threshold; each pair is then scored

    content = (1 + cos) / 2        layout = (1 + ρ) / 2
    similarity = min(layout, (content + layout) / 2, content + 0.05)

with ``cos`` the embedding cosine and ``ρ`` the layout correlation (``operators.selection.layout``).
At a threshold t the picture's arrangement must agree at ≥ t on its own, the mean of the content
and layout agreement must reach t, and the content agreement may fall at most 0.05 below t: a
perfectly aligned copy passes with a weaker embedding match (a heavily compressed copy), a
semantically identical scene in another arrangement (the same chessboard in another pose) never
passes. A pair at or above ``simlarity_threshold`` is a duplicate.

Keepers are chosen greedily in quality order (labelled first, then the quality score, then earlier
in the manifest): the best remaining sample is kept and every not-yet-decided sample that
duplicates it is deleted, naming it. No two kept samples are
duplicates of each other, and every deleted sample names a kept-or-better sample it duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from operators.kinds import Features, OperatorEnv, SelectionOperator
from operators.params import OperatorParams
from operators.registry import register
from operators.sample import Sample, Verdict
from operators.selection.features import (
    BatchFeatures,
    batch_features,
    content_hash,
    encoding_quality,
    is_labelled,
    quality_score,
)
from operators.selection.layout import THUMB, layout_correlation_indexed
from operators.selection.neighbours import RowStore, near_pairs

NEIGHBOURS = 16  # k of the k-NN search; rows with more near neighbours are searched again
REPAIR_ROUNDS = 4
QUALITY_STEP = 0.1  # quality scores closer than this are a tie (then the earlier sample wins)
CONTENT_SLACK = 0.05  # how far below the threshold the content agreement may fall
LAYOUT_CHUNK = 4096  # pairs checked together: ≤ 8192 thumbnails, ~170 MB of templates


def pair_similarity(cos: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """The similarity in [0, 1]: min(layout, mean(content, layout), content + CONTENT_SLACK)."""
    content = (1.0 + cos) / 2.0
    layout = (1.0 + rho) / 2.0
    return np.minimum(np.minimum(layout, (content + layout) / 2.0), content + CONTENT_SLACK).astype(
        np.float32
    )


def min_cosine(threshold: float) -> float:
    """The lowest embedding cosine whose pair can still reach ``threshold``."""
    return max(-1.0, 2.0 * (threshold - CONTENT_SLACK) - 1.0)


def pick_keepers(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    sim: np.ndarray,
    rank: np.ndarray,
    match: np.ndarray | None = None,
    edge: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy keeper choice over duplicate pairs (a[i], b[i]) among ``n`` items.

    ``rank[x]`` is x's place in quality order (0 = best). Items are visited best first; an item not
    yet deleted is kept and deletes every undecided item it is paired with. Returns ``match``
    (-1 = kept, else the index of the keeper it duplicates) and ``edge`` (the pair index that
    matched it). Passing an earlier ``match``/``edge`` continues from it: only pairs whose two ends
    are still kept are considered, so later rounds can merge survivors. ``sim`` is not used to
    choose, only carried by the caller through ``edge``.
    """
    del sim  # the choice is by quality, not by similarity
    match = np.full(n, -1, np.int64) if match is None else match.copy()
    edge = np.full(n, -1, np.int64) if edge is None else edge.copy()
    live = np.flatnonzero((match[a] < 0) & (match[b] < 0))
    if len(live) == 0:
        return match, edge
    src = np.concatenate([a[live], b[live]])
    dst = np.concatenate([b[live], a[live]])
    eid = np.concatenate([live, live])
    order = np.lexsort((rank[dst], rank[src]))
    src, dst, eid = src[order], dst[order], eid[order]
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    ends = np.r_[starts[1:], len(src)]
    deleted = np.zeros(n, bool)
    for s0, e0 in zip(starts.tolist(), ends.tolist(), strict=True):
        u = int(src[s0])
        if deleted[u]:
            continue
        for t in range(s0, e0):
            v = int(dst[t])
            if not deleted[v] and rank[v] > rank[u]:
                deleted[v] = True
                match[v] = u
                edge[v] = int(eid[t])
    return match, edge


def final_keeper(match: np.ndarray) -> np.ndarray:
    """Follow ``match`` chains to the kept item (a keeper deleted in a later round passes it on)."""
    root = np.where(match < 0, np.arange(len(match)), match)
    while True:
        nxt = np.where(match[root] < 0, root, match[root])
        if np.array_equal(nxt, root):
            return root
        root = nxt


@dataclass
class _Seen:
    """Per-sample facts kept between batches (no pixels)."""

    ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    order: list[int] = field(default_factory=list)
    labelled: list[bool] = field(default_factory=list)
    content: list[int] = field(default_factory=list)


@register
class SimDeduplication(SelectionOperator):
    """Near-duplicate removal above ``simlarity_threshold`` (the ModelArts spelling)."""

    name = "SimDeduplication"
    template_id = "sys_data_selection"

    class Params(OperatorParams):
        simlarity_threshold: float = Field(0.9, ge=0.0, le=1.0)

    params: Params

    shardable = True

    def begin(self, env: OperatorEnv) -> None:
        super().begin(env)
        self._seen = _Seen()
        self._by_hash: dict[bytes, int] = {}
        self._known: set[bytes] | dict[bytes, int] = self._by_hash  # what extract need not measure again
        self._quality: list[float] = []
        self._embeddings = RowStore()
        self._thumbs = RowStore(dtype=np.uint8)

    def begin_extract(self, env: OperatorEnv) -> None:
        super().begin(env)
        self._known = set()

    def _measure(self, images: list[np.ndarray]) -> tuple[BatchFeatures, np.ndarray]:
        """``batch_features`` and unit embeddings of decoded images.

        On CPU each of the embedder's lanes measures and embeds whole embedder batches, so that one
        lane's feature work overlaps the other's embedding (no idle core between the two phases).
        """
        if not images:  # every sample was seen before: no need to load the embedder
            return batch_features([]), np.zeros((0, 0), np.float32)
        from operators.embeddings import get_embedder

        embedder = get_embedder(self.env.device)
        if embedder.lanes <= 1:
            feats = batch_features(images)
            parts = [(feats, embedder.embed_resized(feats.embed_inputs, batch_size=max(1, len(images))))]
        else:
            size = embedder.batch_size

            def measure(start: int) -> tuple[BatchFeatures, np.ndarray]:
                feats = batch_features(images[start : start + size], parallel=False)
                return feats, embedder.embed_resized(feats.embed_inputs)

            parts = embedder.map_lanes(measure, range(0, len(images), size))
        feats = BatchFeatures.concat([f for f, _ in parts])
        rows = np.concatenate([np.asarray(r, np.float32) for _, r in parts])
        return feats, rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    def extract(self, batch: list[Sample]) -> Features:
        """Per decodable sample: id, source, order, labelled, content hash, and ``row`` ≥ 0 for the
        first occurrence of a content (not known before), whose quality, embedding and thumbnail are
        row ``row`` of those arrays; later occurrences only point at their content by hash."""
        live = [s for s in batch if s.pixels is not None]
        digests = [content_hash(s) for s in live]
        rows = np.full(len(live), -1, np.int64)
        fresh: list[Sample] = []
        local: set[bytes] = set()
        for i, (sample, digest) in enumerate(zip(live, digests, strict=True)):
            if digest in self._known or digest in local:
                continue
            local.add(digest)
            rows[i] = len(fresh)
            fresh.append(sample)
        if isinstance(self._known, set):  # an extract-only copy remembers what it measured
            self._known |= local
        feats, embeddings = self._measure([s.pixels for s in fresh])  # type: ignore[misc]
        quality = [
            quality_score(int(area), encoding_quality(s), float(sharp))
            for s, area, sharp in zip(fresh, feats.pixel_count, feats.sharpness, strict=True)
        ]
        return {
            "ids": np.array([s.sample_id for s in live], dtype=str),
            "sources": np.array([s.source for s in live], dtype=str),
            "order": np.array([s.order for s in live], np.int64),
            "labelled": np.array([is_labelled(s) for s in live], bool),
            "digest": np.frombuffer(b"".join(digests), np.uint8).reshape(len(live), 16),
            "row": rows,
            "quality": np.array(quality, np.float64),
            "embeddings": embeddings,
            "thumbs": feats.thumbnails,
        }

    def absorb(self, features: Features) -> None:
        seen, rows = self._seen, features["row"]
        new_rows: list[int] = []
        for i, digest_row in enumerate(features["digest"]):
            digest = digest_row.tobytes()
            content = self._by_hash.get(digest)
            if content is None:  # first occurrence: extract measured it
                row = int(rows[i])
                if row < 0:
                    raise RuntimeError("dedup features absorbed out of order: a new content has no row")
                content = self._by_hash[digest] = len(self._quality)
                self._quality.append(float(features["quality"][row]))
                new_rows.append(row)
            seen.ids.append(str(features["ids"][i]))
            seen.sources.append(str(features["sources"][i]))
            seen.order.append(int(features["order"][i]))
            seen.labelled.append(bool(features["labelled"][i]))
            seen.content.append(content)
        if new_rows:
            self._embeddings.append(features["embeddings"][new_rows])
            self._thumbs.append(features["thumbs"][new_rows])

    def _pairs(
        self, rows: np.ndarray, threshold: float, seed: int
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Pairs among content ``rows`` with similarity ≥ ``threshold`` (a, b, sim, cos, rho), and the
        rows whose k-NN list saturated."""
        # a row is searched again only when its k-th neighbour alone reaches the threshold on content
        found = near_pairs(
            self._embeddings,
            rows,
            min_cosine(threshold),
            k=NEIGHBOURS,
            seed=seed,
            saturation_cos=2.0 * threshold - 1.0,
        )
        rho = np.empty(len(found.a), np.float32)
        for start in range(0, len(found.a), LAYOUT_CHUNK):  # bounded memory: ≤ 2·chunk thumbnails
            a, b = found.a[start : start + LAYOUT_CHUNK], found.b[start : start + LAYOUT_CHUNK]
            uniq, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
            thumbs = self._thumbs.rows(uniq).reshape(-1, THUMB, THUMB)
            rho[start : start + len(a)] = layout_correlation_indexed(
                thumbs, inverse[: len(a)], inverse[len(a) :]
            )
        sim = pair_similarity(found.cos, rho)
        keep = sim >= threshold
        pairs = {"a": found.a[keep], "b": found.b[keep], "sim": sim[keep], "cos": found.cos[keep]}
        pairs["rho"] = rho[keep]
        return pairs, found.saturated

    def similar_pairs(self, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct-content pairs (sample indices in observe order, similarity) at or above
        ``threshold``, one search round; for benchmarks and diagnostics."""
        pairs, _ = self._pairs(np.arange(len(self._quality)), threshold, self.env.seed)
        first = {}
        for sample, content_id in enumerate(self._seen.content):
            first.setdefault(content_id, sample)
        to_sample = np.array([first[c] for c in range(len(self._quality))], np.int64)
        return to_sample[pairs["a"]], to_sample[pairs["b"]], pairs["sim"]

    def decide(self) -> dict[str, Verdict]:
        seen = self._seen
        n_samples, n_content = len(seen.ids), len(self._quality)
        if n_samples == 0:
            return {}
        content = np.asarray(seen.content, np.int64)
        order = np.asarray(seen.order, np.int64)
        labelled = np.asarray(seen.labelled, bool)

        # Stage 1: one representative per content (labelled first, then earliest).
        by_pref = np.lexsort((order, ~labelled, content))
        first = np.r_[True, content[by_pref][1:] != content[by_pref][:-1]]
        rep = np.empty(n_content, np.int64)
        rep[content[by_pref][first]] = by_pref[first]

        # Stage 2: near duplicates among representatives.
        quality = np.round(np.asarray(self._quality) / QUALITY_STEP)
        rank = np.empty(n_content, np.int64)
        rank[np.lexsort((order[rep], -quality, ~labelled[rep]))] = np.arange(n_content)
        threshold = self.params.simlarity_threshold
        pairs, saturated = self._pairs(np.arange(n_content), threshold, self.env.seed)
        match, edge = pick_keepers(n_content, pairs["a"], pairs["b"], pairs["sim"], rank)
        for round_ in range(1, REPAIR_ROUNDS + 1):
            survivors = saturated[match[saturated] < 0]
            if len(survivors) < 2:
                break
            more, saturated = self._pairs(survivors, threshold, self.env.seed + round_)
            if len(more["a"]) == 0:
                break
            pairs = {key: np.concatenate([pairs[key], more[key]]) for key in pairs}
            match, edge = pick_keepers(n_content, pairs["a"], pairs["b"], pairs["sim"], rank, match, edge)
        return self._verdicts(rep, match, edge, pairs, final_keeper(match))

    def _verdicts(
        self,
        rep: np.ndarray,
        match: np.ndarray,
        edge: np.ndarray,
        pairs: dict[str, np.ndarray],
        root: np.ndarray,
    ) -> dict[str, Verdict]:
        seen = self._seen
        threshold = self.params.simlarity_threshold
        verdicts: dict[str, Verdict] = {}
        removed = np.zeros(len(seen.ids), np.int64)

        def ref(sample: int) -> dict[str, str]:
            return {"sample_id": seen.ids[sample], "source": seen.sources[sample]}

        for content_id in np.flatnonzero(match >= 0).tolist():
            e = int(edge[content_id])
            keeper = int(rep[match[content_id]])
            evidence: dict[str, Any] = {
                "reason": "near_duplicate",
                "duplicate_of": ref(keeper),
                "similarity": round(float(pairs["sim"][e]), 4),
                "embedding_similarity": round(float((1 + pairs["cos"][e]) / 2), 4),
                "layout_similarity": round(float((1 + pairs["rho"][e]) / 2), 4),
                "threshold": threshold,
            }
            final = int(rep[root[content_id]])
            if final != keeper:
                evidence["kept_representative"] = ref(final)
            verdicts[seen.ids[rep[content_id]]] = Verdict(False, evidence)
            removed[final] += 1
        for sample, content_id in enumerate(seen.content):
            keeper = int(rep[content_id])
            if keeper == sample:
                continue
            evidence = {
                "reason": "exact_duplicate",
                "duplicate_of": ref(keeper),
                "similarity": 1.0,
                "threshold": threshold,
            }
            final = int(rep[root[content_id]])
            if final != keeper:
                evidence["kept_representative"] = ref(final)
            verdicts[seen.ids[sample]] = Verdict(False, evidence)
            removed[final] += 1
        for sample in np.flatnonzero(removed).tolist():
            verdicts[seen.ids[sample]] = Verdict(
                True, {"reason": "kept_best_copy", "duplicates_removed": int(removed[sample])}
            )
        return verdicts
