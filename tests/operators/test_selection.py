"""SimDeduplication and RRD on real photos with planted, known transformations."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

from operators import registry
from operators.decode import decode_image
from operators.errors import InvalidParamsError
from operators.kinds import OperatorEnv, SelectionOperator
from operators.sample import Sample, Verdict
from operators.selection import dedup as dedup_module
from operators.selection.dedup import SimDeduplication, final_keeper, pick_keepers
from operators.selection.features import BatchFeatures, content_hash, jpeg_quality
from operators.selection.layout import layout_correlation, thumbnail
from operators.selection.neighbours import RowStore, near_pairs
from operators.selection.rrd import keep_count
from tests.conftest import PHOTOS

# Distinct photos (no stereo pairs, sequences or resolution variants among them).
BASES = [
    "mate-Aqua",
    "mate-Dune",
    "mate-FreshFlower",
    "mate-Garden",
    "mate-LadyBird",
    "mate-RainDrops",
    "mate-Storm",
    "mate-TwoWings",
    "opencv-baboon",
    "opencv-fruits",
    "opencv-butterfly",
    "opencv-starry_night",
]
DISTRACTORS = [
    "mate-Wood",
    "mate-YellowFlower",
    "opencv-smarties",
    "opencv-orange",
    "opencv-messi5",
    "opencv-home",
    "opencv-sudoku",
    "opencv-apple",
]
SIDE = 640


def _pixels(name: str, side: int = SIDE) -> np.ndarray:
    return np.array(decode_image((PHOTOS / f"{name}.jpg").read_bytes(), max_side=side).pixels)


def _jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _crop_brighter(p: np.ndarray) -> np.ndarray:
    h, w = p.shape[:2]
    dy, dx = int(h * 0.04), int(w * 0.04)
    return np.clip(p[dy : h - dy, dx : w - dx].astype(np.float32) * 1.2, 0, 255).astype(np.uint8)


def _shift_text(p: np.ndarray) -> np.ndarray:
    h, w = p.shape[:2]
    out = cv2.warpAffine(p, np.float32([[1, 0, int(0.06 * w)], [0, 1, 0]]), (w, h))
    cv2.putText(out, "SAMPLE", (int(0.5 * w), int(0.85 * h)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    return out


def _half(p: np.ndarray) -> np.ndarray:
    return cv2.resize(p, (p.shape[1] // 2, p.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _sample(name: str, data: bytes, order: int, labels: list[str] | None = None) -> Sample:
    decoded = decode_image(data)
    return Sample(
        sample_id=hashlib.md5(name.encode()).hexdigest(),
        source=f"obs://bucket/in/{name}",
        name=name,
        data=data,
        format=decoded.format,
        pixels=decoded.pixels,
        order=order,
        labels=labels or [],
    )


def _run(op: SelectionOperator, samples: list[Sample], seed: int = 0, batch: int = 8) -> dict[str, Verdict]:
    op.begin(OperatorEnv(device="cpu", seed=seed, batch_size=batch))
    for start in range(0, len(samples), batch):
        op.observe(samples[start : start + batch])
    return op.decide()


def _dedup(threshold: str = "0.9") -> SimDeduplication:
    op = registry.build("SimDeduplication", {"simlarity_threshold": threshold, "do_validation": "True"})
    assert isinstance(op, SimDeduplication)
    return op


def _ordered(samples: list[Sample]) -> list[Sample]:
    for i, s in enumerate(samples):
        s.order = i
    return samples


@pytest.fixture(scope="module")
def planted() -> tuple[list[Sample], dict[str, str]]:
    """12 photos with 3 transformed copies each, 8 distractors; sample id → group."""
    samples: list[Sample] = []
    group: dict[str, str] = {}
    copies: list[tuple[str, Callable[[np.ndarray], np.ndarray], int]] = [
        ("q35", lambda p: p, 35),
        ("crop-bright", _crop_brighter, 90),
        ("shift-text", _shift_text, 90),
    ]
    for base in BASES:
        pixels = _pixels(base)
        samples.append(_sample(f"{base}.jpg", _jpeg(pixels), 0))
        group[samples[-1].sample_id] = base
        for suffix, transform, quality in copies:
            samples.append(_sample(f"{base}-{suffix}.jpg", _jpeg(transform(pixels), quality), 0))
            group[samples[-1].sample_id] = base
    for name in DISTRACTORS:
        samples.append(_sample(f"{name}.jpg", _jpeg(_pixels(name)), 0))
        group[samples[-1].sample_id] = name
    rng = np.random.default_rng(7)
    shuffled = [samples[i] for i in rng.permutation(len(samples))]
    return _ordered(shuffled), group


def test_planted_near_duplicates_removed_and_distractors_kept(
    planted: tuple[list[Sample], dict[str, str]],
) -> None:
    samples, group = planted
    verdicts = _run(_dedup(), samples)
    deleted = {sid: v for sid, v in verdicts.items() if not v.keep}
    survivors: dict[str, list[str]] = {}
    for s in samples:
        if s.sample_id not in deleted:
            survivors.setdefault(group[s.sample_id], []).append(s.name)
    # exactly one image of every planted group survives, and every distractor survives
    assert {g: len(v) for g, v in survivors.items()} == {g: 1 for g in [*BASES, *DISTRACTORS]}
    assert len(deleted) == 3 * len(BASES)
    ids = {s.sample_id for s in samples}
    for sid, verdict in deleted.items():
        ev = verdict.evidence
        assert ev["reason"] == "near_duplicate"
        named = ev["duplicate_of"]["sample_id"]
        assert named in ids and group[named] == group[sid]  # it names a copy of the same photo
        assert named not in deleted  # the named keeper survives (no chains in this set)
        assert ev["duplicate_of"]["source"].endswith(".jpg")
        assert ev["similarity"] >= 0.9 and ev["threshold"] == 0.9
        content, layout = ev["embedding_similarity"], ev["layout_similarity"]
        expected = min(layout, (content + layout) / 2, content + 0.05)
        assert ev["similarity"] == pytest.approx(expected, abs=1e-3)
    kept_with_dups = [v for v in verdicts.values() if v.keep]
    assert sorted(v.evidence["duplicates_removed"] for v in kept_with_dups) == [3] * len(BASES)


def test_threshold_one_keeps_transformed_copies(planted: tuple[list[Sample], dict[str, str]]) -> None:
    samples, _ = planted
    subset = _ordered([s for s in samples if s.name.startswith(("mate-Aqua", "opencv-baboon"))])
    verdicts = _run(_dedup("1.0"), subset)
    assert not any(not v.keep for v in verdicts.values())


def test_keeper_is_the_better_copy() -> None:
    """Smaller re-compressed copy and blurred copy come first in the manifest, yet lose."""
    dune, storm, aqua = (_pixels(name, 640) for name in ("mate-Dune", "mate-Storm", "mate-Aqua"))
    small = _sample("dune-small-q35.jpg", _jpeg(_half(dune), 35), 0)
    dune_orig = _sample("dune.jpg", _jpeg(dune), 1)
    blurred = _sample("storm-blurred.jpg", _jpeg(cv2.GaussianBlur(storm, (0, 0), 1.5)), 2)
    storm_orig = _sample("storm.jpg", _jpeg(storm), 3)
    aqua_orig = _sample("aqua.jpg", _jpeg(aqua), 4)
    aqua_labelled = _sample("aqua-small-labelled.jpg", _jpeg(_half(aqua), 40), 5, labels=["sea"])
    verdicts = _run(_dedup(), [small, dune_orig, blurred, storm_orig, aqua_orig, aqua_labelled])
    assert {sid for sid, v in verdicts.items() if not v.keep} == {
        small.sample_id,
        blurred.sample_id,
        aqua_orig.sample_id,
    }
    assert verdicts[small.sample_id].evidence["duplicate_of"]["sample_id"] == dune_orig.sample_id
    assert verdicts[blurred.sample_id].evidence["duplicate_of"]["sample_id"] == storm_orig.sample_id
    # a labelled copy beats an unlabelled better original: deleting it would lose the annotation
    assert verdicts[aqua_orig.sample_id].evidence["duplicate_of"]["sample_id"] == aqua_labelled.sample_id


def test_identical_bytes_caught_by_hash_before_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _jpeg(_pixels("opencv-fruits"))
    other = _jpeg(_pixels("mate-Garden"))
    samples = [
        _sample("a/fruits.jpg", data, 0),
        _sample("garden.jpg", other, 1),
        _sample("b/fruits-again.jpg", data, 2),
        _sample("c/fruits-labelled.jpg", data, 3, labels=["fruit"]),
    ]
    embedded: list[int] = []
    real = SimDeduplication._measure

    def counting(self: SimDeduplication, images: list[np.ndarray]) -> tuple[BatchFeatures, np.ndarray]:
        embedded.append(len(images))
        return real(self, images)

    monkeypatch.setattr(SimDeduplication, "_measure", counting)
    verdicts = _run(_dedup(), samples, batch=4)
    assert sum(embedded) == 2  # one embedding per distinct content
    labelled = samples[3].sample_id
    for s in (samples[0], samples[2]):
        ev = verdicts[s.sample_id].evidence
        assert not verdicts[s.sample_id].keep
        assert ev["reason"] == "exact_duplicate" and ev["similarity"] == 1.0
        assert ev["duplicate_of"]["sample_id"] == labelled  # labelled copy of the same bytes is kept
    assert verdicts[labelled].keep and verdicts[labelled].evidence["duplicates_removed"] == 2
    assert samples[1].sample_id not in verdicts


def test_content_hash_uses_pixels_once_changed() -> None:
    data = _jpeg(_pixels("opencv-fruits", 64))
    a, b = _sample("a.jpg", data, 0), _sample("b.jpg", data, 1)
    assert content_hash(a) == content_hash(b)
    b.pixels = np.ascontiguousarray(b.pixels[::-1])
    b.pixels_changed = True
    assert content_hash(a) != content_hash(b)
    c = _sample("c.jpg", data, 2)
    c.pixels_changed = True
    assert content_hash(c) != content_hash(a)  # bytes are stale; the decoded pixels are hashed


def test_many_copies_beyond_k_are_merged_by_repair(monkeypatch: pytest.MonkeyPatch) -> None:
    """With k=2 a group of 8 near-identical images saturates every k-NN list; repair merges them."""
    monkeypatch.setattr(dedup_module, "NEIGHBOURS", 2)
    base = _pixels("mate-LadyBird", 128)
    samples = [
        _sample(f"ladybird-{i}.jpg", _jpeg(np.clip(base.astype(np.int16) + i, 0, 255).astype(np.uint8)), i)
        for i in range(8)
    ]
    verdicts = _run(_dedup(), samples)
    kept = [s for s in samples if verdicts.get(s.sample_id, Verdict(True)).keep]
    assert len(kept) == 1
    final = kept[0].sample_id
    for s in samples:
        ev = verdicts[s.sample_id].evidence
        if s.sample_id != final:
            assert ev.get("kept_representative", ev["duplicate_of"])["sample_id"] == final


def test_pick_keepers_greedy_by_quality() -> None:
    # chain 0-1-2 and star 3-{4,5}; rank: lower is better
    a = np.array([0, 1, 3, 3])
    b = np.array([1, 2, 4, 5])
    rank = np.array([0, 1, 2, 5, 3, 4])
    match, edge = pick_keepers(6, a, b, np.ones(4), rank)
    assert match.tolist() == [-1, 0, -1, 4, -1, -1]  # 4 is better than 3; 5 pairs only with 3
    assert edge[1] == 0 and edge[3] == 2
    # a later round merges two survivors and passes on the deletions of the loser
    match2, _ = pick_keepers(6, np.array([0]), np.array([2]), np.ones(1), rank, match, edge)
    assert match2.tolist() == [-1, 0, 0, 4, -1, -1]
    assert final_keeper(np.array([-1, 0, 1, -1])).tolist() == [0, 0, 0, 3]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("path", ["exact", "reduced-flat", "reduced-ivf"])
def test_near_pairs_finds_planted_pairs(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    from operators.selection import neighbours

    if path != "exact":
        monkeypatch.setattr(neighbours, "EXACT_LIMIT", 100)
    if path == "reduced-ivf":
        monkeypatch.setattr(neighbours, "FLAT_REDUCED_LIMIT", 1000)
    rng = np.random.default_rng(0)
    dim, n_base, n_dup = 256, 3000, 200
    mean = rng.standard_normal(dim)
    base = _unit(mean + rng.standard_normal((n_base, dim)) @ rng.standard_normal((dim, dim)) * 0.1)
    src = rng.choice(n_base, n_dup, replace=False)
    noise = _unit(rng.standard_normal((n_dup, dim)))
    noise -= np.sum(noise * base[src], axis=1, keepdims=True) * base[src]
    cos = rng.uniform(0.82, 0.99, (n_dup, 1))
    dups = _unit(cos * base[src] + np.sqrt(1 - cos**2) * _unit(noise))
    store = RowStore(block_rows=1000)  # several blocks
    store.append(base)
    store.append(dups)
    found = near_pairs(store, np.arange(len(store)), 0.8, k=8)
    got = set(zip(found.a.tolist(), found.b.tolist(), strict=True))
    planted = {(int(s), n_base + i) for i, s in enumerate(src)}
    assert len(planted & got) / len(planted) >= 0.99
    assert np.all(found.cos >= 0.8)
    exact = store.rows(found.a) @ store.rows(found.b).T
    assert np.allclose(np.diag(exact), found.cos, atol=2e-3)  # decided on the full vectors


def test_rowstore_round_trip() -> None:
    store = RowStore(block_rows=5)
    rows = np.arange(36, dtype=np.float32).reshape(12, 3)
    store.append(rows[:7])
    store.append(rows[7:])
    assert len(store) == 12
    assert np.array_equal(store.rows(np.array([11, 0, 5, 6])), rows[[11, 0, 5, 6]])


def test_layout_correlation_tolerates_shift_but_not_other_pictures() -> None:
    fruits, baboon = _pixels("opencv-fruits", 256), _pixels("opencv-baboon", 256)
    shifted = cv2.warpAffine(fruits, np.float32([[1, 0, 20], [0, 1, 0]]), fruits.shape[1::-1])
    darker = (fruits * 0.7).astype(np.uint8)
    thumbs = np.stack([thumbnail(x) for x in (fruits, shifted, darker, baboon)])
    rho = layout_correlation(thumbs[[0, 0, 0]], thumbs[[1, 2, 3]])
    assert rho[0] > 0.8 and rho[1] > 0.99 and rho[2] < 0.5


def test_jpeg_quality_estimate() -> None:
    pixels = _pixels("opencv-fruits", 64)
    for q in (30, 50, 75, 90):
        assert abs(jpeg_quality(_jpeg(pixels, q)) - q) <= 2
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    assert jpeg_quality(buf.getvalue()) is None


@pytest.mark.parametrize(
    ("params", "ok"),
    [
        ({"simlarity_threshold": "0.85"}, True),
        ({"simlarity_threshold": "1.5"}, False),
        ({"simlarity_threshold": "high"}, False),
        ({"similarity_threshold": "0.9"}, False),  # only the ModelArts spelling exists
    ],
)
def test_dedup_params(params: dict[str, str], ok: bool) -> None:
    if ok:
        assert registry.build("SimDeduplication", params).params.simlarity_threshold == 0.85
    else:
        with pytest.raises(InvalidParamsError):
            registry.build("SimDeduplication", params)


# --- RRD ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redundant() -> tuple[list[Sample], set[str]]:
    """16 distinct photos plus a cluster of 11 near-copies of one more photo."""
    names = [*BASES, *DISTRACTORS][:16]
    samples = [_sample(f"{n}.jpg", _jpeg(_pixels(n, 160)), 0) for n in names]
    base = _pixels("opencv-home", 160)
    cluster = [_sample("home.jpg", _jpeg(base), 0)]
    for i in range(10):
        variant = np.clip(base.astype(np.float32) * (0.85 + 0.03 * i), 0, 255).astype(np.uint8)
        cluster.append(_sample(f"home-{i}.jpg", _jpeg(variant, 60 + 3 * i), 0))
    rng = np.random.default_rng(3)
    every = [*samples, *cluster]
    return _ordered([every[i] for i in rng.permutation(len(every))]), {s.sample_id for s in cluster}


def _rrd(ratio: str, clusters: str = "auto") -> SelectionOperator:
    op = registry.build("RRD", {"sample_ratio": ratio, "n_clusters": clusters})
    assert isinstance(op, SelectionOperator)
    return op


def test_rrd_keeps_the_ratio_and_thins_the_redundant_cluster_first(
    redundant: tuple[list[Sample], set[str]],
) -> None:
    samples, cluster = redundant
    n = len(samples)
    verdicts = _run(_rrd("0.667"), samples, seed=11)
    removed = {sid for sid, v in verdicts.items() if not v.keep}
    assert len(removed) == n - keep_count(n, 0.667) == 9
    assert removed <= cluster  # every removal comes from the known redundant cluster
    ranks = sorted(verdicts[sid].evidence["removal_rank"] for sid in removed)
    assert ranks == list(range(1, 10))
    for sid in removed:
        ev = verdicts[sid].evidence
        assert ev["reason"] == "redundant" and ev["nearest"]["sample_id"] in cluster
        assert (
            ev["nearest"]["sample_id"] not in removed
            or verdicts[ev["nearest"]["sample_id"]].evidence["removal_rank"] > ev["removal_rank"]
        )  # it named a sample that was still there when it was removed
    assert all(verdicts[s.sample_id].keep for s in samples if s.sample_id not in cluster)


def test_rrd_is_deterministic_for_a_seed(redundant: tuple[list[Sample], set[str]]) -> None:
    samples, _ = redundant
    first = _run(_rrd("0.5", "4"), samples, seed=5)
    second = _run(_rrd("0.5", "4"), samples, seed=5)
    assert first == second
    assert sum(not v.keep for v in first.values()) == len(samples) - keep_count(len(samples), 0.5)
    clusters = {v.evidence["cluster"] for v in first.values() if v.keep}
    assert clusters == set(range(4))  # every cluster keeps at least one sample


def test_rrd_n_clusters_must_be_below_the_sample_count(redundant: tuple[list[Sample], set[str]]) -> None:
    samples, _ = redundant
    small = samples[:5]
    with pytest.raises(InvalidParamsError, match=r"ModelArts\.4622"):
        _run(_rrd("0.8", "5"), small)
    verdicts = _run(_rrd("0.8", "4"), small)
    assert sum(not v.keep for v in verdicts.values()) == 1


@pytest.mark.parametrize(
    ("params", "ok"),
    [
        ({"n_clusters": "auto"}, True),
        ({"n_clusters": "AUTO"}, True),
        ({"n_clusters": "12"}, True),
        ({"n_clusters": "0"}, False),
        ({"n_clusters": "-3"}, False),
        ({"n_clusters": "2.5"}, False),
        ({"n_clusters": "many"}, False),
        ({"sample_ratio": "0"}, False),
        ({"sample_ratio": "1.2"}, False),
        ({"sample_ratio": "1"}, True),
    ],
)
def test_rrd_params(params: dict[str, str], ok: bool) -> None:
    if ok:
        registry.build("RRD", params)
    else:
        with pytest.raises(InvalidParamsError):
            registry.build("RRD", params)


def test_keep_count_rounds_half_up() -> None:
    assert keep_count(10, 0.9) == 9
    assert keep_count(35, 0.9) == 32  # 31.5 → 32
    assert keep_count(3, 0.1) == 1  # never empties the dataset
