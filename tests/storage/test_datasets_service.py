"""storage.datasets: publishing (split, usage, hard attributes, names), deleting, paging samples."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage.datasets import (
    EVAL,
    TRAIN,
    LastVersionError,
    PublishOptions,
    SplitError,
    default_version_name,
    delete_version,
    derive_samples,
    page_samples,
    parse_ratio,
    publish_from_current,
    register_dataset,
    summarize,
)
from storage.db.engine import make_engine, make_session_factory, session_scope
from storage.db.repositories import DatasetRepository
from storage.manifest import ManifestSample, dump_line, write_manifest
from storage.objectstore.local import LocalObjectStore
from storage.uris import ObjectRef

CLS = "modelarts/image_classification"


def _labelled(n: int, prefix: str = "s") -> list[ManifestSample]:
    return [
        ManifestSample(source=f"obs://bkt/{prefix}{i}.jpg", annotations=[{"type": CLS, "name": "x"}])
        for i in range(n)
    ]


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    store = LocalObjectStore(tmp_path / "store")
    store.ensure_bucket("bkt")
    store.ensure_bucket("out")
    for i in range(4):
        store.put_bytes("bkt", f"in/{'cats' if i % 2 else 'dogs'}/{i}.jpg", b"jpeg")
    return store


def _register(factory: sessionmaker[Session], store: LocalObjectStore, name: str = "ds") -> str:
    with session_scope(factory) as s:
        dataset, _ = register_dataset(
            s, store, project_id="p1", name=name, data_path="/bkt/in/", work_path="/out/w/"
        )
        return dataset.id


# --- derive_samples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "n", "n_train"), [("0.5", 5, 3), ("0.8", 10, 8), ("0", 4, 0), ("0.99", 3, 3)]
)
def test_split_counts_round_half_up(ratio: str, n: int, n_train: int) -> None:
    out = derive_samples(_labelled(n), PublishOptions(train_evaluate_sample_ratio=ratio), seed="v1")
    assert Counter(s.usage for s in out) == Counter({TRAIN: n_train, EVAL: n - n_train}) - Counter()


def test_split_depends_only_on_seed_and_sample_ids() -> None:
    samples = _labelled(40)
    opts = PublishOptions(train_evaluate_sample_ratio="0.5")
    first = [s.usage for s in derive_samples(samples, opts, seed="seed-a")]
    assert [s.usage for s in derive_samples(list(reversed(samples)), opts, seed="seed-a")] == list(
        reversed(first)
    )
    others = {tuple(s.usage for s in derive_samples(samples, opts, seed=f"seed-{i}")) for i in range(5)}
    assert len(others | {tuple(first)}) > 1  # another seed gives another split


def test_unlabelled_samples_are_never_split_and_a_split_needs_labels() -> None:
    unlabelled = ManifestSample(source="obs://bkt/u.jpg", usage="TEST")
    out = derive_samples(
        [*_labelled(2), unlabelled],
        PublishOptions(train_evaluate_sample_ratio="0.5", remove_sample_usage=False),
        seed="v",
    )
    assert out[2].usage == "TEST"
    with pytest.raises(SplitError):
        derive_samples([unlabelled], PublishOptions(train_evaluate_sample_ratio="0.5"), seed="v")


def test_ratio_one_keeps_or_clears_usage_without_splitting() -> None:
    samples = [
        ManifestSample(source="obs://bkt/a.jpg", usage="EVAL", annotations=[{"type": CLS, "name": "x"}])
    ]
    kept = derive_samples(samples, PublishOptions(remove_sample_usage=False), seed="v")
    cleared = derive_samples(samples, PublishOptions(), seed="v")
    assert (kept[0].usage, cleared[0].usage) == ("EVAL", None)
    assert samples[0].usage == "EVAL"  # the parent's samples are not changed


def test_clear_hard_property_strips_line_and_label_attributes() -> None:
    sample = ManifestSample(
        source="obs://bkt/a.jpg",
        annotations=[
            {
                "type": CLS,
                "name": "x",
                "hard": "true",
                "hard-coefficient": 0.4,
                "property": {"@modelarts:hard": "1", "color": "red"},
            }
        ],
        extra={"hard": "true", "hard_coefficient": 0.9, "hard-reasons": "1-2", "id": "keep"},
    )
    cleared = derive_samples([sample], PublishOptions(), seed="v")[0]
    assert cleared.to_dict() == {
        "source": "obs://bkt/a.jpg",
        "id": "keep",
        "annotation": [{"type": CLS, "name": "x", "property": {"color": "red"}}],
    }
    kept = derive_samples([sample], PublishOptions(clear_hard_property=False), seed="v")[0]
    assert dump_line(kept) == dump_line(sample)


@pytest.mark.parametrize("text", ["2", "-0.1", "1.0000001", "nan", "inf", "", "0.5.1", "1e5", "half"])
def test_parse_ratio_refuses_values_outside_zero_to_one(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ratio(text)


@pytest.mark.parametrize(("text", "value"), [("0", "0"), ("1.00", "1"), (" 0.8 ", "0.8"), ("1e-1", "0.1")])
def test_parse_ratio_accepts_zero_to_one(text: str, value: str) -> None:
    assert parse_ratio(text) == Decimal(value)


def test_summarize_label_type() -> None:
    assert summarize(_labelled(2)).label_type == "single"
    two = ManifestSample(
        source="obs://bkt/m.jpg", annotations=[{"type": CLS, "name": "a"}, {"type": CLS, "name": "b"}]
    )
    assert summarize([*_labelled(1), two]).label_type == "multi"
    assert summarize([ManifestSample(source="obs://bkt/u.jpg")]).label_type is None


# --- page_samples --------------------------------------------------------------------------------


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize(("offset", "limit"), [(0, 3), (2, 3), (5, 10), (9, 1), (10, 5), (0, 100)])
def test_page_samples_matches_slicing_the_whole_manifest(
    store: LocalObjectStore, descending: bool, offset: int, limit: int
) -> None:
    samples = [*_labelled(6, "l"), *(ManifestSample(source=f"obs://bkt/u{i}.jpg") for i in range(4))]
    write_manifest(store, ObjectRef("bkt", "m/x.manifest"), samples)
    ordered = list(reversed(samples)) if descending else samples
    labelled = [s for s in ordered if s.annotations]
    total, page = page_samples(
        store, "obs://bkt/m/x.manifest", offset=offset, limit=limit, descending=descending
    )
    assert (total, page) == (10, ordered[offset : offset + limit])
    total, page = page_samples(
        store,
        "obs://bkt/m/x.manifest",
        offset=offset,
        limit=limit,
        descending=descending,
        keep=lambda s: bool(s.annotations),
    )
    assert (total, page) == (6, labelled[offset : offset + limit])


# --- publishing and deleting against the DB ------------------------------------------------------


def test_default_names_skip_taken_ones_and_custom_names_do_not_move_the_counter(
    factory: sessionmaker[Session], store: LocalObjectStore
) -> None:
    dataset_id = _register(factory, store)
    with session_scope(factory) as s:
        dataset = DatasetRepository(s).get("p1", dataset_id)
        publish_from_current(s, store, dataset, version_name="run2024")
        assert dataset.next_version_num == 2
        publish_from_current(s, store, dataset, version_name="V0011")
        assert dataset.next_version_num == 12
        assert default_version_name(s, dataset) == "V012"
        publish_from_current(s, store, dataset, version_name="V013")
        dataset.next_version_num = 13  # a counter behind an existing name (rows from before 0002)
        assert default_version_name(s, dataset) == "V014"


def test_publish_records_parent_counters(factory: sessionmaker[Session], store: LocalObjectStore) -> None:
    dataset_id = _register(factory, store)
    with session_scope(factory) as s:
        dataset = DatasetRepository(s).get("p1", dataset_id)
        parent_id = dataset.current_version_id
        version = publish_from_current(
            s, store, dataset, options=PublishOptions(train_evaluate_sample_ratio="0.5")
        )
        assert dataset.current_version_id == version.id and version.previous_version_id == parent_id
        assert (version.total_sample_count, version.annotated_sample_count) == (4, 4)
        assert (version.previous_total_sample_count, version.previous_annotated_sample_count) == (4, 4)
        assert version.modified_sample_count == 4 and version.label_type == "single"
        assert version.manifest_uri == f"obs://out/w/ds-{dataset_id}/annotation/V002/V002.manifest"


def test_only_version_cannot_be_deleted(factory: sessionmaker[Session], store: LocalObjectStore) -> None:
    dataset_id = _register(factory, store)
    with session_scope(factory) as s:
        dataset = DatasetRepository(s).get("p1", dataset_id)
        only = DatasetRepository(s).get_version(dataset_id, dataset.current_version_id or "")
        with pytest.raises(LastVersionError):
            delete_version(s, dataset, only)


def test_concurrent_publishes_get_distinct_default_names(
    factory: sessionmaker[Session], store: LocalObjectStore
) -> None:
    dataset_id = _register(factory, store)
    errors: list[str] = []
    barrier = threading.Barrier(4)

    def publish() -> None:
        barrier.wait()
        try:
            with session_scope(factory) as s:
                publish_from_current(s, store, DatasetRepository(s).get("p1", dataset_id, for_update=True))
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with session_scope(factory) as s:
        repo = DatasetRepository(s)
        versions = repo.versions(dataset_id)
        assert [v.name for v in versions] == ["V005", "V004", "V003", "V002", "V001"]
        assert repo.get("p1", dataset_id).current_version_id == versions[0].id
        # Each version's parent is the one published just before it: no publish saw a stale current.
        assert [v.previous_version_id for v in versions[:-1]] == [v.id for v in versions[1:]]
