"""PCC on real images: Fashion-MNIST exemplars and contamination, decisions, evidence, cache, errors.

The quality protocol (issue 5) on ``fashion-mnist-500``: two wanted classes given by 20 prototype
images each, 30 more images of each wanted class as samples, and contamination from the other eight
classes at 20 % of the samples; criticisms are 5 other images of each contaminating class. Averaged
over four draws; every draw reuses the embedding cache, so the 500 images are embedded once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from operators import registry
from operators.cleaning.pcc import PCC, PccError
from operators.decode import decode_image
from operators.errors import InvalidParamsError
from operators.kinds import OperatorEnv
from operators.sample import Sample, Verdict
from tests.conftest import FASHION

WANTED = ("Trouser", "Bag")
PROTOS_PER_CLASS, SAMPLES_PER_CLASS, CRITS_PER_CLASS = 20, 30, 5
CONTAMINATION = 0.2
DRAWS = 4


def _load(path: Path, label: str) -> Sample:
    data = path.read_bytes()
    decoded = decode_image(data)
    return Sample(
        sample_id=f"{label}-{path.stem}",
        source=f"obs://fashion/{label}/{path.name}",
        name=path.name,
        label_dir=f"{label}/",
        data=data,
        format=decoded.format,
        pixels=decoded.pixels,
        labels=[label],
    )


@pytest.fixture(scope="module")
def fashion() -> dict[str, list[Sample]]:
    return {d.name: [_load(p, d.name) for p in sorted(d.glob("*.png"))] for d in sorted(FASHION.iterdir())}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pcc-cache")


def make_env(
    folders: dict[str, list[Sample]], cache: Path | None, seed: int = 7, **extra: object
) -> OperatorEnv:
    def list_images(folder: str) -> Iterator[Sample]:
        if folder not in folders:
            raise FileNotFoundError(f"no such folder {folder}")
        yield from (replace(s, evidence=[]) for s in folders[folder])

    return OperatorEnv(
        device="cpu", seed=seed, batch_size=32, cache_dir=cache, list_images=list_images, **extra
    )


def run_pcc(
    params: dict[str, str], env: OperatorEnv, samples: list[Sample], batch: int = 32
) -> tuple[PCC, dict[str, Verdict]]:
    op = registry.build("PCC", params)
    assert isinstance(op, PCC)
    op.begin(env)
    for start in range(0, len(samples), batch):
        op.observe([replace(s, evidence=[]) for s in samples[start : start + batch]])
    return op, op.decide()


def draw(
    fashion: dict[str, list[Sample]], seed: int
) -> tuple[list[Sample], set[str], list[Sample], list[Sample]]:
    """(samples, ids of the wanted ones, prototypes, criticisms) of one random draw."""
    rng = np.random.default_rng(seed)
    protos, samples, wanted = [], [], set()
    for label in WANTED:
        order = rng.permutation(len(fashion[label]))
        protos += [fashion[label][i] for i in order[:PROTOS_PER_CLASS]]
        chosen = [fashion[label][i] for i in order[PROTOS_PER_CLASS : PROTOS_PER_CLASS + SAMPLES_PER_CLASS]]
        samples += chosen
        wanted |= {s.sample_id for s in chosen}
    others = [label for label in fashion if label not in WANTED]
    n_contam = round(len(samples) * CONTAMINATION / (1 - CONTAMINATION))
    pools = {label: list(rng.permutation(len(fashion[label]))) for label in others}
    crits = [fashion[label][pools[label].pop()] for label in others for _ in range(CRITS_PER_CLASS)]
    for label in rng.choice(others, n_contam):
        samples.append(fashion[label][pools[label].pop()])
    order = rng.permutation(len(samples))
    return [samples[i] for i in order], wanted, protos, crits


def precision_recall(verdicts: dict[str, Verdict], wanted: set[str]) -> tuple[float, float]:
    kept = {sid for sid, v in verdicts.items() if v.keep}
    return len(kept & wanted) / max(len(kept), 1), len(kept & wanted) / len(wanted)


def _quality(fashion: dict[str, list[Sample]], cache: Path, with_criticisms: bool) -> tuple[float, float]:
    ps, rs = [], []
    for seed in range(DRAWS):
        samples, wanted, protos, crits = draw(fashion, seed)
        folders = {"obs://ex/protos/": protos, "obs://ex/crits/": crits}
        params = {"prototype_sample_path": "obs://ex/protos/"}
        if with_criticisms:
            params["criticism_sample_path"] = "obs://ex/crits/"
        _, verdicts = run_pcc(params, make_env(folders, cache, seed=seed), samples)
        assert set(verdicts) == {s.sample_id for s in samples}
        p, r = precision_recall(verdicts, wanted)
        ps.append(p)
        rs.append(r)
    return float(np.mean(ps)), float(np.mean(rs))


def test_distinct_classes_without_criticisms(fashion: dict[str, list[Sample]], cache_dir: Path) -> None:
    precision, recall = _quality(fashion, cache_dir, with_criticisms=False)
    assert precision >= 0.95 and recall >= 0.90, (precision, recall)


def test_criticisms_raise_precision(fashion: dict[str, list[Sample]], cache_dir: Path) -> None:
    precision, recall = _quality(fashion, cache_dir, with_criticisms=True)
    assert precision >= 0.98 and recall >= 0.85, (precision, recall)


def test_evidence_cache_and_determinism(fashion: dict[str, list[Sample]], tmp_path: Path) -> None:
    samples, _wanted, protos, crits = draw(fashion, 11)
    samples = samples[:40]
    folders = {"obs://ex/protos/": protos, "obs://ex/crits/": crits}
    params = {"prototype_sample_path": "obs://ex/protos/", "criticism_sample_path": "obs://ex/crits/"}
    first_op, first = run_pcc(params, make_env(folders, tmp_path), samples, batch=7)
    assert first_op.computed == len(samples)
    again_op, again = run_pcc(params, make_env(folders, tmp_path), samples, batch=13)
    assert again_op.computed == 0  # every embedding came from the cache
    assert again == first
    _no_cache_op, no_cache = run_pcc(params, make_env(folders, None), samples, batch=32)
    assert {k: v.keep for k, v in no_cache.items()} == {k: v.keep for k, v in first.items()}

    proto_sources = {s.source for s in protos}
    crit_sources = {s.source for s in crits}
    for _sid, verdict in first.items():
        ev = verdict.evidence
        assert ev["prototype"] in proto_sources and ev["criticism"] in crit_sources
        assert ev["rule"] in {
            "similar_to_prototype",
            "near_copy_of_prototype",
            "near_copy_of_criticism",
            "below_similarity_floor",
            "closer_to_criticism",
        }
        assert 0.0 <= ev["prototype_distance"] <= 2.0
        if verdict.keep and ev["rule"] == "similar_to_prototype":
            assert ev["similarity_floor"] <= ev["similarity"]
            assert ev["criticism_similarity"] < ev["similarity"]
        if ev["rule"] == "below_similarity_floor":
            assert not verdict.keep and ev["similarity"] < ev["similarity_floor"]
        if ev["rule"] == "closer_to_criticism":
            assert not verdict.keep and ev["criticism_similarity"] >= ev["similarity"]
    # A prototype fed back as a sample is a near copy of itself and is kept.
    _copy_op, copies = run_pcc(
        params, make_env(folders, tmp_path), [replace(protos[0], sample_id="copy"), *samples]
    )
    assert copies["copy"].keep and copies["copy"].evidence["rule"] == "near_copy_of_prototype"
    assert copies["copy"].evidence["prototype"] == protos[0].source
    assert copies["copy"].evidence["prototype_distance"] < 1e-2


def test_stricter_threshold_keeps_a_subset(fashion: dict[str, list[Sample]], cache_dir: Path) -> None:
    samples, _, protos, _ = draw(fashion, 0)
    folders = {"obs://ex/protos/": protos}
    kept = []
    for t in ("0.5", "0.9", "1.0"):
        params = {"prototype_sample_path": "obs://ex/protos/", "simlarity_threshold": t}
        _, verdicts = run_pcc(params, make_env(folders, cache_dir), samples)
        kept.append({sid for sid, v in verdicts.items() if v.keep})
    assert kept[2] <= kept[1] <= kept[0]
    assert len(kept[2]) < len(kept[1]) < len(kept[0])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "prototype_sample_path"),
        ({"prototype_sample_path": ""}, "prototype_sample_path"),
        ({"prototype_sample_path": "protos"}, "prototype_sample_path"),
        ({"prototype_sample_path": "obs://b/p/", "n_clusters": "zero"}, "n_clusters"),
        ({"prototype_sample_path": "obs://b/p/", "n_clusters": "0"}, "n_clusters"),
        ({"prototype_sample_path": "obs://b/p/", "n_clusters": "2.5"}, "n_clusters"),
        ({"prototype_sample_path": "obs://b/p/", "simlarity_threshold": "1.5"}, "simlarity_threshold"),
        ({"prototype_sample_path": "obs://b/p/", "simlarity_threshold": "nan"}, "simlarity_threshold"),
        ({"prototype_sample_path": "obs://b/p/", "embedding_distance": "-0.1"}, "embedding_distance"),
        ({"prototype_sample_path": "obs://b/p/", "similarity_threshold": "0.9"}, "similarity_threshold"),
    ],
)
def test_invalid_params_are_refused_at_submission(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidParamsError, match=field):
        registry.build("PCC", params)


def test_reference_params_parse() -> None:
    op = registry.build(
        "PCC",
        {
            "task_type": "image_classification",
            "dataset_type": "manifest",
            "source_service": "select",
            "filter_func": "data_cleaning_select",
            "prototype_sample_path": "obs://test-obs/classify/data/animals/",
            "criticism_sample_path": "",
            "n_clusters": "auto",
            "simlarity_threshold": "0.9",
            "embedding_distance": "0.2",
            "checkpoint_path": "",
            "total_status": "[0,2]",
            "do_validation": "True",
        },
    )
    p = op.params
    assert isinstance(op, PCC) and op.template_id == "sys_data_cleaning"
    assert p.criticism_sample_path is None and p.checkpoint_path is None and p.n_clusters == "auto"
    assert (p.simlarity_threshold, p.embedding_distance, p.do_validation) == (0.9, 0.2, True)
    assert registry.build("PCC", {"prototype_sample_path": "/b/p", "n_clusters": "7"}).params.n_clusters == 7


def test_run_time_errors(fashion: dict[str, list[Sample]], cache_dir: Path) -> None:
    samples, _, protos, _ = draw(fashion, 0)
    folders = {"obs://ex/protos/": protos, "obs://ex/one/": protos[:1]}
    with pytest.raises(PccError, match=r"ModelArts\.4622"):
        run_pcc(
            {"prototype_sample_path": "obs://ex/protos/", "n_clusters": "10"},
            make_env(folders, cache_dir),
            samples[:10],
        )
    _, ok = run_pcc(
        {"prototype_sample_path": "obs://ex/protos/", "n_clusters": "9"},
        make_env(folders, cache_dir),
        samples[:10],
    )
    assert len(ok) == 10 and {v.evidence["cluster"] for v in ok.values()} <= set(range(9))
    folders["obs://ex/two/"] = protos[:2]
    _, two = run_pcc({"prototype_sample_path": "obs://ex/two/"}, make_env(folders, cache_dir), samples[:6])
    assert all(np.isfinite(v.evidence["similarity_floor"]) for v in two.values())
    with pytest.raises(PccError, match="at least 2 prototype images"):
        run_pcc({"prototype_sample_path": "obs://ex/one/"}, make_env(folders, cache_dir), samples[:5])
    with pytest.raises(PccError, match="cannot read criticism exemplars from obs://ex/missing/"):
        run_pcc(
            {"prototype_sample_path": "obs://ex/protos/", "criticism_sample_path": "obs://ex/missing/"},
            make_env(folders, cache_dir),
            samples[:5],
        )
    _op, verdicts = run_pcc({"prototype_sample_path": "obs://ex/protos/"}, make_env(folders, cache_dir), [])
    assert verdicts == {}


def _synthetic(rng: np.random.Generator, n: int, dim: int = 64) -> tuple[np.ndarray, np.ndarray]:
    centres = np.abs(rng.normal(size=(4, dim))) + 0.5
    labels = rng.integers(0, 4, n)
    x = np.maximum(centres[labels] + rng.normal(0, 0.6, (n, dim)), 0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def test_scores_do_not_depend_on_chunking_or_subsampling(monkeypatch: pytest.MonkeyPatch) -> None:
    from operators.cleaning import functional as F

    rng = np.random.default_rng(3)
    x, labels = _synthetic(rng, 3000)
    protos = x[labels == 0][:20]
    crits = x[labels == 3][:10]

    def run(config: F.PccConfig) -> F.PccScores:
        store = F.RowStore(x.shape[1])
        store.append(x)
        try:
            return F.score(store, protos, crits, config, np.random.default_rng(0))
        finally:
            store.close()

    whole = run(F.PccConfig(subsample=5000))
    monkeypatch.setattr(F, "_CHUNK_FLOATS", 64 * 100)  # chunks of ~100 rows instead of all at once
    chunked = run(F.PccConfig(subsample=5000))
    np.testing.assert_array_equal(chunked.keep, whole.keep)
    np.testing.assert_allclose(chunked.prototype_score, whole.prototype_score, atol=1e-5)
    # A subsample smaller than N (k-means refined by full passes) still separates the classes.
    sub = run(F.PccConfig(subsample=500, n_clusters=200))
    assert sub.n_clusters == 200 and set(np.unique(sub.cluster)) <= set(range(200))
    wanted = labels == 0
    assert (sub.keep & wanted).sum() / max(sub.keep.sum(), 1) > 0.95
    assert (sub.keep & wanted).sum() / wanted.sum() > 0.85


def test_decision_rule_order() -> None:
    from operators.cleaning import functional as F

    keep, rule = F.decide(
        prototype_score=np.array([0.5, 0.1, 0.5, 0.1, 0.5, 0.5], np.float32),
        prototype_distance=np.array([0.5, 0.1, 0.5, 0.5, 0.15, 0.5], np.float32),
        criticism_score=np.array([0.2, 0.9, 0.6, 0.0, 0.9, 0.5], np.float32),
        criticism_distance=np.array([0.5, 0.5, 0.5, 0.05, 0.1, 0.5], np.float32),
        floor=0.3,
        embedding_distance=0.2,
    )
    assert [F.RULES[r] for r in rule] == [
        "similar_to_prototype",
        "near_copy_of_prototype",  # below the floor and nearer a criticism, but a near copy of a prototype
        "closer_to_criticism",
        "near_copy_of_criticism",
        "near_copy_of_criticism",  # both near: the nearer exemplar decides
        "closer_to_criticism",  # a tie goes to the criticism
    ]
    assert keep.tolist() == [True, True, False, False, False, False]
    assert F.floor_of(0.4, 0.9) == pytest.approx(0.36) and F.floor_of(-0.4, 0.9) == pytest.approx(-0.44)
