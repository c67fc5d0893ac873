"""Dataset create/describe: import layouts, the ModelArts OBS layout, and error codes."""

from __future__ import annotations

from storage.manifest import read_manifest, sample_id
from storage.uris import parse_uri
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
