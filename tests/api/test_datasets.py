"""The dataset API (modelarts-datasets-api.md): datasets, versions, samples, projects, attack strings."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest

from storage.datasets import PublishOptions, derive_samples, split_key
from storage.db.engine import make_engine, make_session_factory, session_scope
from storage.db.models import DatasetVersion, ProcessorTask
from storage.manifest import read_manifest, sample_id
from storage.uris import parse_uri
from storage.voc import parse_voc
from tests.api.conftest import Harness
from tests.conftest import FIXTURES, PHOTOS


def _create(api: Harness, name: str, data_path: str, **extra) -> tuple[int, dict]:
    body = {
        "dataset_name": name,
        "data_sources": [{"data_path": data_path}],
        "work_path": "/out/w/",
        "work_path_type": 0,
        **extra,
    }
    resp = api.client.post("/v2/p1/datasets", json=body)
    return resp.status_code, resp.json()


def test_register_flat_folder_writes_v001_manifest_in_modelarts_layout(api: Harness) -> None:
    photos = sorted(p.name for p in PHOTOS.glob("*.jpg"))[:4]
    api.put_photos("bucket", "flat/", photos)
    api.store.put_bytes("bucket", "flat/readme.txt", b"not an image")
    api.store.ensure_bucket("out")
    status, body = _create(api, "flat-ds", "/bucket/flat/", description="four photos")
    assert status == 201
    dataset_id = body["dataset_id"]
    assert len(dataset_id) == 19 and dataset_id.isalnum()

    desc = api.client.get(f"/v2/p1/datasets/{dataset_id}").json()
    assert desc["dataset_name"] == "flat-ds" and desc["dataset_type"] == 0
    assert desc["current_version_name"] == "V001" and desc["total_sample_count"] == 4
    assert desc["inner_work_path"] == f"/out/w/flat-ds-{dataset_id}/"
    assert desc["data_sources"] == [{"data_type": 0, "data_path": "/bucket/flat/"}]
    assert desc["next_version_num"] == 2 and desc["dataset_version_count"] == 1

    manifest = parse_uri(f"/out/w/flat-ds-{dataset_id}/annotation/V001/V001.manifest")
    samples = list(read_manifest(api.store, manifest))
    assert [s.source for s in samples] == [f"obs://bucket/flat/{n}" for n in photos]
    assert all(len(sample_id(s.source)) == 32 for s in samples)


def test_register_label_folders_gives_classification_labels(api: Harness) -> None:
    photos = sorted(p.name for p in PHOTOS.glob("*.jpg"))
    api.put_photos("bucket", "cls/cats/", photos[:2])
    api.put_photos("bucket", "cls/dogs/", photos[2:5])
    api.store.ensure_bucket("out")
    status, body = _create(api, "pets", "obs://bucket/cls/")
    assert status == 201
    desc = api.client.get(f"/v2/p1/datasets/{body['dataset_id']}").json()
    assert sorted(label["name"] for label in desc["labels"]) == ["cats", "dogs"]
    assert desc["annotated_sample_count"] == 5


def test_register_images_with_voc_gives_detection(api: Harness) -> None:
    api.put_photos("bucket", "det/", ["opencv-fruits.jpg"])
    api.store.put_bytes(
        "bucket", "det/opencv-fruits.xml", (FIXTURES / "voc" / "2007_000027.xml").read_bytes()
    )
    api.store.ensure_bucket("out")
    status, body = _create(api, "det", "/bucket/det/")
    assert status == 201
    assert api.client.get(f"/v2/p1/datasets/{body['dataset_id']}").json()["dataset_type"] == 1


def test_register_errors(api: Harness) -> None:
    api.store.ensure_bucket("out")
    api.store.ensure_bucket("bucket")
    api.store.put_bytes("bucket", "empty/readme.txt", b"no images here")
    assert _create(api, "e1", "/bucket/empty/")[1]["error_code"] == "ModelArts.4340"
    assert _create(api, "e2", "/bucket/")[1]["error_code"] == "ModelArts.4205"
    assert _create(api, "e3", "/bucket/x/", work_path="/out/")[1]["error_code"] == "ModelArts.4205"
    assert _create(api, "e4", "/out/w/in/")[1]["error_code"] == "ModelArts.4364"
    assert _create(api, "bad name!", "/bucket/x/")[1]["error_code"] == "ModelArts.0101"
    assert _create(api, "e5", "/bucket/x/", dataset_type=400)[1]["error_code"] == "ModelArts.0101"
    api.put_photos("bucket", "ok/", ["opencv-fruits.jpg"])
    assert _create(api, "dup", "/bucket/ok/")[0] == 201
    assert _create(api, "dup", "/bucket/ok/")[1]["error_code"] == "ModelArts.4351"
    resp = api.client.get("/v2/p1/datasets/abcdefghijklmnopqrs")
    assert (resp.status_code, resp.json()["error_code"]) == (400, "ModelArts.4352")


def test_register_from_manifest_file(api: Harness) -> None:
    api.put_photos("bucket", "m/", ["opencv-fruits.jpg", "opencv-apple.jpg"])
    lines = [
        '{"source":"obs://bucket/m/opencv-fruits.jpg","annotation":[{"type":"modelarts/image_classification","name":"fruit"}]}',
        '{"source":"obs://bucket/m/opencv-apple.jpg","usage":"TRAIN"}',
    ]
    api.store.put_bytes("bucket", "m/in.manifest", ("\n".join(lines) + "\n").encode())
    api.store.ensure_bucket("out")
    status, body = _create(api, "from-manifest", "/bucket/m/in.manifest")
    assert status == 201, body
    desc = api.client.get(f"/v2/p1/datasets/{body['dataset_id']}").json()
    assert desc["total_sample_count"] == 2 and desc["annotated_sample_count"] == 1


# --- helpers -------------------------------------------------------------------------------------

FAKE_JPEG = b"\xff\xd8\xff\xe0 not decoded by the importer"


def _put_fake(api: Harness, bucket: str, keys: list[str]) -> None:
    api.store.ensure_bucket(bucket)
    for key in keys:
        api.store.put_bytes(bucket, key, FAKE_JPEG)


def _classification(api: Harness, name: str = "pets", per_label: int = 5, project: str = "p1") -> str:
    """A classification dataset: ``cats`` and ``dogs`` folders plus 2 unlabelled top-level images."""
    keys = [f"{name}/cats/c{i}.jpg" for i in range(per_label)]
    keys += [f"{name}/dogs/d{i}.jpg" for i in range(per_label)]
    keys += [f"{name}/u{i}.jpg" for i in range(2)]
    _put_fake(api, "bucket", keys)
    api.store.ensure_bucket("out")
    resp = api.client.post(
        f"/v2/{project}/datasets",
        json={
            "dataset_name": name,
            "data_sources": [{"data_path": f"/bucket/{name}/"}],
            "work_path": "/out/w/",
            "work_path_type": 0,
        },
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["dataset_id"]


def _manifest_dataset(api: Harness, lines: list[dict], name: str = "from-m") -> str:
    api.store.ensure_bucket("bucket")
    api.store.ensure_bucket("out")
    for line in lines:
        key = parse_uri(line["source"]).key
        api.store.put_bytes("bucket", key, FAKE_JPEG)
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    api.store.put_bytes("bucket", f"{name}/in.manifest", body)
    status, created = _create(api, name, f"/bucket/{name}/in.manifest")
    assert status == 201, created
    return created["dataset_id"]


def _publish(api: Harness, dataset_id: str, project: str = "p1", **body: Any) -> str:
    resp = api.client.post(f"/v2/{project}/datasets/{dataset_id}/versions", json=body)
    assert resp.status_code == 201, resp.text
    assert set(resp.json()) == {"version_id"}
    return resp.json()["version_id"]


def _describe(api: Harness, dataset_id: str, project: str = "p1") -> dict:
    resp = api.client.get(f"/v2/{project}/datasets/{dataset_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _version(api: Harness, dataset_id: str, version_id: str) -> dict:
    resp = api.client.get(f"/v2/p1/datasets/{dataset_id}/versions/{version_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _manifest_lines(api: Harness, manifest_path: str) -> list[dict]:
    return [s.to_dict() for s in read_manifest(api.store, parse_uri(manifest_path))]


def _error(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["error_code"]


def _stored_keys(api: Harness) -> set[str]:
    return {str(p.relative_to(api.root)) for p in api.root.rglob("*") if p.is_file()}


# --- create: the request contract ----------------------------------------------------------------


def test_official_create_example_is_accepted_as_is(api: Harness) -> None:
    _put_fake(api, "test-obs", [f"classify/input/animals/a{i}.jpg" for i in range(3)])
    body = {
        "workspace_id": "0",
        "dataset_name": "dataset-457f",
        "dataset_type": 0,
        "data_sources": [{"data_type": 0, "data_path": "/test-obs/classify/input/animals/"}],
        "description": "",
        "work_path": "/test-obs/classify/output/",
        "work_path_type": 0,
        "labels": [
            {"name": "Rabbits", "type": 0, "property": {"@modelarts:color": "#3399ff"}},
            {"name": "Bees", "type": 0, "property": {"@modelarts:color": "#3399ff"}},
        ],
    }
    resp = api.client.post("/v2/p1/datasets", json=body)
    assert resp.status_code == 201, resp.text
    desc = _describe(api, resp.json()["dataset_id"])
    assert desc["labels"][:2] == body["labels"]
    assert desc["work_path"] == "/test-obs/classify/output/"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"unknown_field": 1}, "unknown_field"),
        ({"data_sources": [{"data_path": "/bucket/x/", "bogus": True}]}, "bogus"),
        ({"labels": [{"name": "a", "colour": "red"}]}, "colour"),
        ({"managed": True}, "managed"),
        ({"data_format": "CarbonData"}, "data_format"),
        ({"schema": [{"schema_id": 1, "name": "c", "type": "STRING"}]}, "schema"),
        ({"label_format": {"label_type": "1"}}, "label_format"),
        ({"workforce_information": {"workforces": []}}, "workforce_information"),
        ({"work_path_type": 1}, "work_path_type"),
        ({"data_sources": [{"data_path": "/bucket/x/", "data_type": 1}]}, "data_type"),
        ({"data_sources": [{"data_path": "/bucket/x/", "source_info": {"ip": "1"}}]}, "source_info"),
        ({"dataset_type": 400}, "dataset_type"),
        ({"description": "a<b"}, "description"),
    ],
)
def test_create_refuses_unknown_and_unsupported_fields_naming_them(
    api: Harness, extra: dict, named: str
) -> None:
    status, body = _create(api, "named", "/bucket/x/", **extra)
    assert (status, body["error_code"]) == (400, "ModelArts.0101")
    assert named in body["error_msg"]


def test_create_accepts_out_of_scope_fields_at_their_defaults(api: Harness) -> None:
    _put_fake(api, "bucket", ["d/a.jpg"])
    api.store.ensure_bucket("out")
    status, body = _create(
        api,
        "defaults",
        "/bucket/d/",
        managed=False,
        import_data=True,  # Terraform sends it unconditionally
        data_format="Default",
        schema=[],
        label_format=None,
        import_annotations=True,
        workspace_id="0",
    )
    assert status == 201, body


# --- list / describe / delete datasets -------------------------------------------------------------


def test_list_datasets_pages_sorts_filters_and_searches(api: Harness) -> None:
    ids = {name: _classification(api, name, per_label=1) for name in ("b-one", "a_two", "c-three")}
    _put_fake(api, "bucket", ["det-x/1.jpg"])
    api.store.put_bytes("bucket", "det-x/1.xml", (FIXTURES / "voc" / "2007_000027.xml").read_bytes())
    assert _create(api, "det-x", "/bucket/det-x/")[0] == 201

    resp = api.client.get("/v2/p1/datasets")
    assert resp.status_code == 200
    listed = resp.json()
    assert listed["total_number"] == 4
    assert [d["dataset_name"] for d in listed["datasets"]] == ["det-x", "c-three", "a_two", "b-one"]
    assert "labels" not in listed["datasets"][0]  # with_labels defaults to false

    by_name = api.client.get("/v2/p1/datasets?sort_by=dataset_name&order=asc&limit=2&offset=1").json()
    assert by_name["total_number"] == 4
    assert [d["dataset_name"] for d in by_name["datasets"]] == ["b-one", "c-three"]

    detection = api.client.get("/v2/p1/datasets?dataset_type=1").json()
    assert [d["dataset_name"] for d in detection["datasets"]] == ["det-x"]

    found = api.client.get("/v2/p1/datasets?search_content=TWO&with_labels=true").json()
    assert found["total_number"] == 1 and found["datasets"][0]["dataset_id"] == ids["a_two"]
    assert {label["name"] for label in found["datasets"][0]["labels"]} == {"cats", "dogs"}
    # LIKE wildcards are literal: "_" matches only the underscore in a_two.
    assert api.client.get("/v2/p1/datasets?search_content=_").json()["total_number"] == 1
    assert api.client.get("/v2/p1/datasets?search_content=%25").json()["total_number"] == 0

    item = listed["datasets"][1]
    assert item["versions"][0]["version_name"] == "V001" and item["versions"][0]["is_current"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "offset=-1",
        f"offset={2**31}",
        "offset=1e3",
        "sort_by=name",
        "order=up",
        "search_content=" + "a" * 101,
        "search_content=a%00b",
    ],
)
def test_list_datasets_refuses_out_of_range_parameters(api: Harness, query: str) -> None:
    assert _error(api.client.get(f"/v2/p1/datasets?{query}")) == (400, "ModelArts.0101")


def test_offset_is_a_record_offset(api: Harness) -> None:
    for name in ("d1", "d2", "d3"):
        _classification(api, name, per_label=1)
    names = [d["dataset_name"] for d in api.client.get("/v2/p1/datasets?limit=2&offset=1").json()["datasets"]]
    assert names == ["d2", "d1"]


def test_describe_dataset_holds_the_current_version(api: Harness) -> None:
    dataset_id = _classification(api)
    desc = _describe(api, dataset_id)
    assert [v["version_id"] for v in desc["versions"]] == [desc["current_version_id"]]
    version = desc["versions"][0]
    assert version["is_current"] and version["version_name"] == "V001"
    assert version["total_sample_count"] == 12 and version["annotated_sample_count"] == 10
    assert desc["total_sample_count"] == 12 and desc["annotated_sample_count"] == 10
    assert desc["dataset_tags"] == ["Image", "Image classification"]
    check = api.client.get(f"/v2/p1/datasets/{dataset_id}?check_running_task=true").json()
    assert check["exist_running_task"] is False and check["running_tasks_id"] == []


def test_delete_dataset_removes_records_and_keeps_manifests(api: Harness) -> None:
    dataset_id = _classification(api)
    manifest = _describe(api, dataset_id)["versions"][0]["manifest_path"]
    resp = api.client.delete(f"/v2/p1/datasets/{dataset_id}")
    assert resp.status_code == 204 and resp.content == b""
    assert _error(api.client.get(f"/v2/p1/datasets/{dataset_id}")) == (400, "ModelArts.4352")
    assert _error(api.client.delete(f"/v2/p1/datasets/{dataset_id}")) == (400, "ModelArts.4352")
    assert api.client.get("/v2/p1/datasets").json()["total_number"] == 0
    assert len(_manifest_lines(api, manifest)) == 12
    assert _classification(api, "pets-again") != dataset_id


# --- versions ----------------------------------------------------------------------------------------


def test_publish_creates_the_next_current_version_in_the_obs_layout(api: Harness) -> None:
    dataset_id = _classification(api)
    v1 = _describe(api, dataset_id)["current_version_id"]
    resp = api.client.post(f"/v2/p1/datasets/{dataset_id}/versions")  # no body: every field defaults
    assert resp.status_code == 201, resp.text
    v2 = resp.json()["version_id"]
    assert len(v2) == 19 and v2.isalnum()

    desc = _describe(api, dataset_id)
    assert desc["current_version_id"] == v2 and desc["current_version_name"] == "V002"
    assert desc["next_version_num"] == 3 and desc["dataset_version_count"] == 2

    version = _version(api, dataset_id, v2)
    inner = f"/out/w/pets-{dataset_id}/annotation/"
    assert version["manifest_path"] == inner + "V002/V002.manifest"
    assert version["data_path"] == inner + "V002/data/"
    assert version["is_current"] and version["previous_version_id"] == v1
    assert version["status"] == 1 and version["version_format"] == "Default"
    assert version["total_sample_count"] == 12 and version["annotated_sample_count"] == 10
    assert version["previous_total_sample_count"] == 12 and version["previous_annotated_sample_count"] == 10
    assert version["train_evaluate_sample_ratio"] == "1.00"
    assert version["remove_sample_usage"] and version["clear_hard_property"]
    assert version["label_type"] == "single" and version["task_type"] == 0
    assert {(s["name"], s["count"], s["sample_count"]) for s in version["label_stats"]} == {
        ("cats", 5, 5),
        ("dogs", 5, 5),
    }
    assert "analysis_task_id" not in version and "processor_task_id" not in version
    assert not _version(api, dataset_id, v1)["is_current"]
    assert "previous_version_id" not in _version(api, dataset_id, v1)
    assert len(_manifest_lines(api, version["manifest_path"])) == 12


def test_publish_names_custom_duplicate_and_next_default(api: Harness) -> None:
    dataset_id = _classification(api)
    custom = _publish(api, dataset_id, version_name="V010", description="^ is allowed here")
    assert _version(api, dataset_id, custom)["description"] == "^ is allowed here"
    assert _version(api, dataset_id, _publish(api, dataset_id))["version_name"] == "V011"
    named = _publish(api, dataset_id, version_name="release_candidate-1")
    assert _version(api, dataset_id, named)["version_name"] == "release_candidate-1"
    assert _describe(api, dataset_id)["next_version_num"] == 12  # custom names do not move it
    dup = api.client.post(f"/v2/p1/datasets/{dataset_id}/versions", json={"version_name": "V010"})
    assert _error(dup) == (400, "ModelArts.4371")
    assert _describe(api, dataset_id)["dataset_version_count"] == 4


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"version_name": "a" * 33}, "version_name"),
        ({"version_name": ""}, "version_name"),
        ({"version_format": "CSV"}, "version_format"),
        ({"export_images": True}, "export_images"),
        ({"with_column_header": False}, "with_column_header"),
        ({"train_evaluate_sample_ratio": "1.5"}, "train_evaluate_sample_ratio"),
        ({"train_evaluate_sample_ratio": "-0.1"}, "train_evaluate_sample_ratio"),
        ({"train_evaluate_sample_ratio": "nan"}, "train_evaluate_sample_ratio"),
        ({"train_evaluate_sample_ratio": "half"}, "train_evaluate_sample_ratio"),
        ({"description": "a=b"}, "description"),
        ({"label_task_id": "x"}, "label_task_id"),
    ],
)
def test_publish_refuses_bad_and_unknown_fields(api: Harness, body: dict, named: str) -> None:
    dataset_id = _classification(api, per_label=1)
    resp = api.client.post(f"/v2/p1/datasets/{dataset_id}/versions", json=body)
    assert _error(resp) == (400, "ModelArts.0101")
    assert named in resp.json()["error_msg"]
    assert _describe(api, dataset_id)["dataset_version_count"] == 1


def test_publish_splits_labelled_samples_deterministically(api: Harness) -> None:
    dataset_id = _classification(api, per_label=10)
    version_id = _publish(api, dataset_id, train_evaluate_sample_ratio="0.75")
    version = _version(api, dataset_id, version_id)
    assert version["train_evaluate_sample_ratio"] == "0.75"
    lines = _manifest_lines(api, version["manifest_path"])
    usage = Counter(line.get("usage") for line in lines if line.get("annotation"))
    assert usage == {"TRAIN": 15, "EVAL": 5}
    assert all("usage" not in line for line in lines if not line.get("annotation"))
    assert version["modified_sample_count"] == 20

    # The split is a function of the version id and the sample ids only.
    v1_manifest = _version(api, dataset_id, version["previous_version_id"])["manifest_path"]
    parent = list(read_manifest(api.store, parse_uri(v1_manifest)))
    opts = PublishOptions(train_evaluate_sample_ratio="0.75")
    again = [s.to_dict() for s in derive_samples(parent, opts, seed=version_id)]
    assert again == lines
    train = {line["source"] for line in lines if line.get("usage") == "TRAIN"}
    expected = sorted(
        (s for s in parent if s.annotations), key=lambda s: (split_key(version_id, s.source), s.source)
    )
    assert train == {s.source for s in expected[:15]}


def test_publish_split_without_labelled_samples_is_refused(api: Harness) -> None:
    _put_fake(api, "bucket", ["flat/a.jpg", "flat/b.jpg"])
    api.store.ensure_bucket("out")
    dataset_id = _create(api, "flat", "/bucket/flat/")[1]["dataset_id"]
    resp = api.client.post(
        f"/v2/p1/datasets/{dataset_id}/versions", json={"train_evaluate_sample_ratio": "0.8"}
    )
    assert _error(resp) == (400, "ModelArts.4342")
    assert _describe(api, dataset_id)["dataset_version_count"] == 1


def test_publish_honours_usage_and_hard_options(api: Harness) -> None:
    cls = {"type": "modelarts/image_classification", "name": "fruit", "hard": "true"}
    lines = [
        {"source": "obs://bucket/m/a.jpg", "usage": "EVAL", "hard": "true", "annotation": [cls]},
        {"source": "obs://bucket/m/b.jpg", "usage": "TRAIN", "hard-coefficient": 0.7},
    ]
    dataset_id = _manifest_dataset(api, lines)
    v1 = _describe(api, dataset_id)["current_version_id"]
    assert _manifest_lines(api, _version(api, dataset_id, v1)["manifest_path"]) == lines

    kept = _version(
        api, dataset_id, _publish(api, dataset_id, remove_sample_usage=False, clear_hard_property=False)
    )
    assert _manifest_lines(api, kept["manifest_path"]) == lines
    assert kept["modified_sample_count"] == 0
    assert not kept["remove_sample_usage"] and not kept["clear_hard_property"]

    cleared = _version(api, dataset_id, _publish(api, dataset_id))
    assert _manifest_lines(api, cleared["manifest_path"]) == [
        {"source": "obs://bucket/m/a.jpg", "annotation": [{"type": cls["type"], "name": "fruit"}]},
        {"source": "obs://bucket/m/b.jpg"},
    ]
    assert cleared["modified_sample_count"] == 2


def test_list_versions_newest_first_with_filters(api: Harness) -> None:
    dataset_id = _classification(api, per_label=2)
    v2 = _publish(api, dataset_id, train_evaluate_sample_ratio="0.5")
    v3 = _publish(api, dataset_id)
    listed = api.client.get(f"/v2/p1/datasets/{dataset_id}/versions").json()
    assert listed["total_number"] == 3
    assert [v["version_name"] for v in listed["versions"]] == ["V003", "V002", "V001"]
    assert [v["is_current"] for v in listed["versions"]] == [True, False, False]
    page = api.client.get(f"/v2/p1/datasets/{dataset_id}/versions?offset=1&limit=1").json()
    assert page["total_number"] == 3 and [v["version_id"] for v in page["versions"]] == [v2]
    assert api.client.get(f"/v2/p1/datasets/{dataset_id}/versions?status=1").json()["total_number"] == 3
    assert api.client.get(f"/v2/p1/datasets/{dataset_id}/versions?status=0").json()["total_number"] == 0
    ratio = api.client.get(f"/v2/p1/datasets/{dataset_id}/versions?train_evaluate_ratio=0.0,0.6").json()
    assert [v["version_id"] for v in ratio["versions"]] == [v2]
    assert v3 in {v["version_id"] for v in listed["versions"]}
    for query in ("limit=0", "limit=1001", "offset=-1", "status=5", "train_evaluate_ratio=0.9,0.1"):
        resp = api.client.get(f"/v2/p1/datasets/{dataset_id}/versions?{query}")
        assert _error(resp) == (400, "ModelArts.0101"), query


def test_delete_version_moves_current_to_the_newest_remaining(api: Harness) -> None:
    dataset_id = _classification(api, per_label=1)
    v1 = _describe(api, dataset_id)["current_version_id"]
    v2 = _publish(api, dataset_id)
    v3 = _publish(api, dataset_id)
    manifest_v3 = _version(api, dataset_id, v3)["manifest_path"]

    resp = api.client.delete(f"/v2/p1/datasets/{dataset_id}/versions/{v3}")
    assert resp.status_code == 204 and resp.content == b""
    desc = _describe(api, dataset_id)
    assert desc["current_version_id"] == v2 and desc["dataset_version_count"] == 2
    assert _error(api.client.get(f"/v2/p1/datasets/{dataset_id}/versions/{v3}")) == (400, "ModelArts.4353")
    assert len(_manifest_lines(api, manifest_v3)) == 4  # storage is left alone

    assert api.client.delete(f"/v2/p1/datasets/{dataset_id}/versions/{v1}").status_code == 204
    assert _describe(api, dataset_id)["current_version_id"] == v2  # not current: nothing moves
    last = api.client.delete(f"/v2/p1/datasets/{dataset_id}/versions/{v2}")
    assert _error(last) == (400, "ModelArts.4828")
    assert _describe(api, dataset_id)["current_version_id"] == v2
    # Names of deleted versions are not reused by default naming.
    assert _version(api, dataset_id, _publish(api, dataset_id))["version_name"] == "V004"


def test_describe_version_links_processor_tasks(api: Harness, db_url: str) -> None:
    dataset_id = _classification(api, per_label=1)
    v1 = _describe(api, dataset_id)["current_version_id"]
    resp = api.client.post(
        "/v2/p1/processor-tasks",
        json={
            "name": "analyse-pets",
            "template": {"id": "sys_data_analyse"},
            "inputs": [{"type": "DATASET", "source": dataset_id, "version_id": v1}],
        },
    )
    assert resp.status_code in (200, 201), resp.text
    analysis_id = resp.json()["task_id"]
    version = _version(api, dataset_id, v1)
    assert version["analysis_task_id"] == analysis_id and version["analysis_status"] == 0
    assert version["analysis_cache_path"] == f"/out/w/pets-{dataset_id}/annotation/evaluation/V001/"

    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        s.get(ProcessorTask, analysis_id).status = 4  # stopped reads as failed (3)
        worker_task = ProcessorTask(
            project_id="p1",
            name="augment-pets",
            template_id="sys_data_augmentation",
            template={"id": "sys_data_augmentation"},
            status=2,
        )
        s.add(worker_task)
        s.flush()
        s.get(DatasetVersion, v1).processor_task_id = worker_task.id
        worker_id = worker_task.id
    engine.dispose()
    version = _version(api, dataset_id, v1)
    assert version["analysis_status"] == 3
    assert (version["processor_task_id"], version["processor_task_status"]) == (worker_id, 2)
    listed = api.client.get(f"/v2/p1/datasets/{dataset_id}/versions").json()["versions"][0]
    assert listed["processor_task_status"] == 2 and listed["analysis_status"] == 3


# --- samples -----------------------------------------------------------------------------------------


def test_list_samples_of_the_current_version(api: Harness) -> None:
    dataset_id = _classification(api, per_label=2)
    resp = api.client.get(f"/v2/p1/datasets/{dataset_id}/data-annotations/samples?order=asc&limit=100")
    assert resp.status_code == 200, resp.text
    listed = resp.json()
    assert listed["sample_count"] == 6
    sources = [s["source"] for s in listed["samples"]]
    assert sources == [
        "obs://bucket/pets/cats/c0.jpg",
        "obs://bucket/pets/cats/c1.jpg",
        "obs://bucket/pets/dogs/d0.jpg",
        "obs://bucket/pets/dogs/d1.jpg",
        "obs://bucket/pets/u0.jpg",
        "obs://bucket/pets/u1.jpg",
    ]
    first = listed["samples"][0]
    assert first["sample_id"] == sample_id("obs://bucket/pets/cats/c0.jpg")
    assert (first["sample_name"], first["sample_dir"]) == ("c0.jpg", "/bucket/pets/cats/")
    assert first["sample_type"] == 0 and first["metadata"] == {}
    assert first["labels"] == [{"name": "cats", "type": 0, "property": {}, "annotated_by": "human"}]
    assert listed["samples"][-1]["labels"] == []

    desc = api.client.get(f"/v2/p1/datasets/{dataset_id}/data-annotations/samples?limit=2&offset=1").json()
    assert desc["sample_count"] == 6  # the total, not the page size
    assert [s["source"] for s in desc["samples"]] == [sources[4], sources[3]]
    tail = api.client.get(f"/v2/p1/datasets/{dataset_id}/data-annotations/samples?offset=5").json()
    assert [s["source"] for s in tail["samples"]] == [sources[0]]
    beyond = api.client.get(f"/v2/p1/datasets/{dataset_id}/data-annotations/samples?offset=6").json()
    assert beyond == {"sample_count": 6, "samples": []}


def test_list_samples_filters_and_versions(api: Harness) -> None:
    dataset_id = _classification(api, per_label=2)
    base = f"/v2/p1/datasets/{dataset_id}/data-annotations/samples"
    assert api.client.get(f"{base}?sample_state=__NONE__").json()["sample_count"] == 2
    assert api.client.get(f"{base}?sample_state=__ALL__").json()["sample_count"] == 4
    dogs = api.client.get(f"{base}?label_name=dogs").json()
    assert dogs["sample_count"] == 2 and all(s["labels"][0]["name"] == "dogs" for s in dogs["samples"])
    assert api.client.get(f"{base}?sample_type=2").json() == {"sample_count": 0, "samples": []}

    v1 = _describe(api, dataset_id)["current_version_id"]
    _publish(api, dataset_id, train_evaluate_sample_ratio="0.5")
    old = api.client.get(f"{base}?version_id={v1}&limit=100").json()
    assert old["sample_count"] == 6
    for query in ("limit=0", "limit=101", "offset=-1", "order=random", "sample_state=__UNCHECK__"):
        assert _error(api.client.get(f"{base}?{query}")) == (400, "ModelArts.0101"), query
    assert _error(api.client.get(f"{base}?version_id=abcdefghijklmnopqrs")) == (400, "ModelArts.4353")


def test_list_samples_reads_detection_boxes_from_voc(api: Harness) -> None:
    api.put_photos("bucket", "det/", ["opencv-fruits.jpg"])
    voc = FIXTURES / "voc" / "2007_000027.xml"
    api.store.put_bytes("bucket", "det/opencv-fruits.xml", voc.read_bytes())
    api.store.ensure_bucket("out")
    dataset_id = _create(api, "det", "/bucket/det/")[1]["dataset_id"]
    listed = api.client.get(f"/v2/p1/datasets/{dataset_id}/data-annotations/samples").json()
    assert listed["sample_count"] == 1
    sample = listed["samples"][0]
    parsed = parse_voc(voc.read_bytes())
    assert [label["name"] for label in sample["labels"]] == [obj.name for obj in parsed.objects]
    box = parsed.boxes[0]
    assert sample["labels"][0]["type"] == 1
    assert sample["labels"][0]["property"] == {
        "@modelarts:shape": "bndbox",
        "@modelarts:feature": [[box.xmin, box.ymin], [box.xmax, box.ymax]],
    }
    assert sample["metadata"]["@modelarts:size"][:2] == [parsed.width, parsed.height]


# --- projects and untrusted strings ---------------------------------------------------------------


def test_a_project_never_reads_lists_or_writes_another_projects_datasets(api: Harness) -> None:
    dataset_id = _classification(api, project="p1")
    v1 = _describe(api, dataset_id)["current_version_id"]
    other = "/v2/p2/datasets"
    assert api.client.get(other).json() == {"total_number": 0, "datasets": []}
    assert _error(api.client.get(f"{other}/{dataset_id}")) == (400, "ModelArts.4352")
    assert _error(api.client.delete(f"{other}/{dataset_id}")) == (400, "ModelArts.4352")
    assert _error(api.client.post(f"{other}/{dataset_id}/versions", json={})) == (400, "ModelArts.4352")
    assert _error(api.client.get(f"{other}/{dataset_id}/versions")) == (400, "ModelArts.4352")
    assert _error(api.client.get(f"{other}/{dataset_id}/versions/{v1}")) == (400, "ModelArts.4352")
    assert _error(api.client.delete(f"{other}/{dataset_id}/versions/{v1}")) == (400, "ModelArts.4352")
    samples = api.client.get(f"{other}/{dataset_id}/data-annotations/samples")
    assert _error(samples) == (400, "ModelArts.4352")

    # p2's own dataset cannot reach p1's version either, and may reuse p1's dataset name.
    p2_dataset = _classification(api, name="pets", project="p2")
    assert _error(api.client.get(f"{other}/{p2_dataset}/versions/{v1}")) == (400, "ModelArts.4353")
    assert _error(api.client.delete(f"{other}/{p2_dataset}/versions/{v1}")) == (400, "ModelArts.4353")
    resp = api.client.get(f"{other}/{p2_dataset}/data-annotations/samples?version_id={v1}")
    assert _error(resp) == (400, "ModelArts.4353")
    assert [d["dataset_id"] for d in api.client.get(other).json()["datasets"]] == [p2_dataset]

    desc = _describe(api, dataset_id)  # p1's dataset is untouched
    assert desc["dataset_version_count"] == 1 and desc["current_version_id"] == v1


ATTACKS = ["../x", "/etc/passwd", "%2e%2e/", "a\x00b", "x" * 2000]
ATTACK_IDS = ["dotdot", "absolute", "encoded-dotdot", "nul", "2000-chars"]


def _outside_store(api: Harness) -> set[str]:
    """Files beside the store's root (the SQLite files aside): a write that escaped would show here."""
    return {str(p) for p in api.root.parent.rglob("*") if not p.name.startswith("meta.db")} - {
        str(p) for p in api.root.rglob("*")
    }


@pytest.mark.parametrize("attack", ATTACKS, ids=ATTACK_IDS)
def test_attack_strings_as_dataset_names_are_refused(api: Harness, attack: str) -> None:
    _put_fake(api, "bucket", ["ok/a.jpg"])
    api.store.ensure_bucket("out")
    before = _stored_keys(api)
    status, body = _create(api, attack, "/bucket/ok/")
    assert (status, body["error_code"]) == (400, "ModelArts.0101")
    assert _stored_keys(api) == before


@pytest.mark.parametrize("attack", ATTACKS, ids=ATTACK_IDS)
@pytest.mark.parametrize("field", ["data_path", "work_path"])
def test_attack_strings_as_paths_never_leave_the_store(api: Harness, attack: str, field: str) -> None:
    _put_fake(api, "bucket", ["ok/a.jpg", "%2e%2e/a.jpg"])
    api.store.ensure_bucket("out")
    before = _stored_keys(api)
    outside = _outside_store(api)
    paths = {"data_path": "/bucket/ok/", "work_path": "/out/w/"}
    paths[field] = attack if attack.startswith("/") else "/bucket/" + attack
    status, body = _create(api, "attacked", paths["data_path"], work_path=paths["work_path"])
    written = _stored_keys(api) - before
    if attack == "%2e%2e/":  # nothing is URL-decoded: a literal folder named "%2e%2e"
        assert status == 201, body
        prefix = "bucket/%2e%2e/" if field == "work_path" else "out/w/"
        assert written and all(key.startswith(prefix) for key in written)
    else:
        assert status == 400
        assert body["error_code"] in {"ModelArts.0101", "ModelArts.4312", "ModelArts.4313"}
        assert written == set()
        assert api.client.get("/v2/p1/datasets").json()["total_number"] == 0
    assert _outside_store(api) == outside


@pytest.mark.parametrize("attack", ATTACKS, ids=ATTACK_IDS)
def test_attack_strings_as_version_names_are_refused(api: Harness, attack: str) -> None:
    dataset_id = _classification(api, per_label=1)
    before = _stored_keys(api)
    resp = api.client.post(f"/v2/p1/datasets/{dataset_id}/versions", json={"version_name": attack})
    assert _error(resp) == (400, "ModelArts.0101")
    assert _stored_keys(api) == before


@pytest.mark.parametrize(
    "attack",
    ["%2e%2e", "a\x00b", "x" * 2000, "abc'--", "OTHER"],
    ids=["encoded-dotdot", "nul", "2000-chars", "sql-quote", "other-projects-id"],
)
def test_attack_strings_as_ids_are_unknown_ids(api: Harness, attack: str) -> None:
    dataset_id = _classification(api, per_label=1)
    other_project = _classification(api, name="theirs", per_label=1, project="p2")
    other_version = _describe(api, other_project, project="p2")["current_version_id"]
    bad_dataset = other_project if attack == "OTHER" else quote(attack, safe="")
    bad_version = other_version if attack == "OTHER" else quote(attack, safe="")
    # NUL is refused before routing (it can never be stored); anything else is an unknown id.
    gone_dataset = "ModelArts.0101" if "\x00" in attack else "ModelArts.4352"
    gone_version = "ModelArts.0101" if "\x00" in attack else "ModelArts.4353"
    base = "/v2/p1/datasets"
    for method in ("GET", "DELETE"):
        assert _error(api.client.request(method, f"{base}/{bad_dataset}")) == (400, gone_dataset)
        version_url = f"{base}/{dataset_id}/versions/{bad_version}"
        assert _error(api.client.request(method, version_url)) == (400, gone_version)
    assert _error(api.client.get(f"{base}/{bad_dataset}/versions")) == (400, gone_dataset)
    assert _error(api.client.post(f"{base}/{bad_dataset}/versions", json={})) == (400, gone_dataset)
    samples = api.client.get(
        f"{base}/{dataset_id}/data-annotations/samples",
        params={"version_id": other_version if attack == "OTHER" else attack},
    )
    assert _error(samples) == (400, gone_version)
    assert _describe(api, other_project, project="p2")["dataset_version_count"] == 1
    assert _describe(api, dataset_id)["dataset_version_count"] == 1


@pytest.mark.parametrize("attack", ["../x", "/etc/passwd", "%2e%2e/", "' OR '1'='1", "%", "_%_"])
def test_attack_strings_as_search_content_match_literally(api: Harness, attack: str) -> None:
    _classification(api, per_label=1)
    resp = api.client.get("/v2/p1/datasets", params={"search_content": attack})
    assert resp.status_code == 200
    assert resp.json()["total_number"] == 0
