"""sys_data_selection through the API: the official create-selection.json body (ids substituted).

Runs the real API app and the real runner in-process (``tests/support/stack.py``). The dataset holds
real photos, a re-compressed copy, a shifted and cropped copy, identical bytes under another name,
and a truncated file; ``do_validation: "True"`` runs MetaValidation first, as ModelArts does.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from operators.decode import decode_image
from storage.db.repositories import DatasetRepository
from storage.manifest import IMAGE_CLASSIFICATION
from storage.uris import parse_uri
from tests.conftest import EXAMPLES, PHOTOS
from tests.support.stack import Stack, in_process_stack

pytestmark = pytest.mark.e2e
IN, OUT = "sel-in", "sel-out"
KEPT, DELETED = 0, 2


def _photo(name: str, side: int = 640) -> np.ndarray:
    return np.array(decode_image((PHOTOS / f"{name}.jpg").read_bytes(), max_side=side).pixels)


def _jpeg(pixels: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _shift_crop(p: np.ndarray) -> np.ndarray:
    h, w = p.shape[:2]
    shifted = cv2.warpAffine(p, np.float32([[1, 0, int(0.05 * w)], [0, 1, 0]]), (w, h))
    return shifted[int(0.03 * h) : h - int(0.03 * h), : w - int(0.04 * w)]


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    with in_process_stack(tmp_path) as s:
        s.store.ensure_bucket(IN)
        s.store.ensure_bucket(OUT)
        yield s


def _register(stack: Stack, name: str, files: dict[str, bytes]) -> dict:
    """Upload ``files`` under ``{name}/`` (label = first folder) and register them from a manifest."""
    for rel, data in files.items():
        stack.put_file(IN, f"{name}/{rel}", data)
    lines = [
        {
            "source": f"obs://{IN}/{name}/{rel}",
            "annotation": [{"type": IMAGE_CLASSIFICATION, "name": rel.split("/")[0]}],
        }
        for rel in files
    ]
    stack.put_file(IN, f"{name}/input.manifest", "".join(json.dumps(x) + "\n" for x in lines).encode())
    return stack.create_dataset(name, f"/{IN}/{name}/input.manifest", work_path=f"/{OUT}/{name}/")


def _outputs(stack: Stack, output_path: str) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    root = parse_uri(output_path if output_path.endswith("/") else output_path + "/")
    prefix = root.key + "Data/"
    files = {
        i.key[len(prefix) :]: stack.store.get_bytes(root.bucket, i.key)
        for i in stack.store.list(root.bucket, prefix)
    }
    text = stack.store.get_bytes(root.bucket, root.key + "output.manifest").decode()
    return files, [json.loads(line) for line in text.splitlines() if line.strip()]


def _evidence(result: Any, operator: str) -> dict[str, Any]:
    (found,) = [e for e in result.result_description if e.get("operator") == operator]
    return found


def test_selection_example_removes_duplicates_into_v003(stack: Stack) -> None:
    fruits = _photo("opencv-fruits")
    garden = _photo("mate-Garden")
    fruits_jpg = _jpeg(fruits)
    files = {
        "cat/fruits.jpg": fruits_jpg,
        "cat/baboon.jpg": _jpeg(_photo("opencv-baboon")),
        "cat/fruits_recompressed.jpg": _jpeg(fruits, 35),
        "dog/garden.jpg": _jpeg(garden),
        "dog/butterfly.jpg": _jpeg(_photo("opencv-butterfly")),
        "dog/garden_shifted.jpg": _jpeg(_shift_crop(garden), 85),
        "cat/fruits_again.jpg": fruits_jpg,  # the same bytes under another name
        "dog/starry.jpg": _jpeg(_photo("opencv-starry_night")),
        "dog/broken.jpg": fruits_jpg[: len(fruits_jpg) // 3],
    }
    dataset = _register(stack, "photos", files)
    body = stack.example(EXAMPLES / "create-selection.json", dataset)
    params = body["template"]["operator_params"][0]["params"]
    assert params["simlarity_threshold"] == "0.9" and params["do_validation"] == "True"
    assert body["work_path"]["version_name"] == "V003"

    task = stack.run_task(body)
    (version,) = stack.versions(task["task_id"])
    assert version.status == 2, version.error_msg
    results = {r.origin_source.rsplit("/photos/", 1)[1]: r for r in stack.results(version.id)}
    assert set(results) == set(files)

    duplicates = {
        "cat/fruits_recompressed.jpg": ("cat/fruits.jpg", "near_duplicate"),
        "dog/garden_shifted.jpg": ("dog/garden.jpg", "near_duplicate"),
        "cat/fruits_again.jpg": ("cat/fruits.jpg", "exact_duplicate"),
    }
    for rel, result in results.items():
        if rel in duplicates:
            keeper, reason = duplicates[rel]
            assert result.result_property == DELETED, rel
            assert result.new_source is None
            ev = _evidence(result, "SimDeduplication")
            assert ev["kept"] is False and ev["reason"] == reason
            assert ev["duplicate_of"]["source"] == f"obs://{IN}/photos/{keeper}"
            assert ev["duplicate_of"]["sample_id"] == results[keeper].sample_id
            assert ev["similarity"] >= 0.9
        elif rel == "dog/broken.jpg":  # MetaValidation ran first and dropped it
            assert result.result_property == DELETED
            assert _evidence(result, "MetaValidation")["result"] == "deleted"
            assert not [e for e in result.result_description if e.get("operator") == "SimDeduplication"]
        else:
            assert result.result_property == KEPT, rel
            assert result.new_source.endswith(f"/Data/{rel}")
    fruits_ev = _evidence(results["cat/fruits.jpg"], "SimDeduplication")
    assert fruits_ev["kept"] is True and fruits_ev["duplicates_removed"] == 2

    assert version.origin_sample_count == len(files)
    assert version.deleted_sample_count == 4
    assert version.unmodified_sample_count == len(files) - 4
    assert version.modified_sample_count == 0 and version.add_sample_count == 0

    data, manifest = _outputs(stack, version.output_path)
    kept = {rel for rel, r in results.items() if r.result_property == KEPT}
    assert set(data) == kept
    assert data["cat/fruits.jpg"] == files["cat/fruits.jpg"]  # copied byte for byte
    assert sorted(line["source"].split("/Data/")[1] for line in manifest) == sorted(kept)
    for line in manifest:
        assert line["annotation"] == [
            {"type": IMAGE_CLASSIFICATION, "name": line["source"].split("/Data/")[1].split("/")[0]}
        ]

    with stack.sessions() as s:
        versions = {v.name: v for v in DatasetRepository(s).versions(dataset["dataset_id"])}
        assert "V003" in versions
        assert versions["V003"].total_sample_count == len(kept)
        assert versions["V003"].deleted_sample_count == 4


def _rrd_body(stack: Stack, dataset: dict, name: str, version_name: str, **params: str) -> dict:
    body = stack.example(EXAMPLES / "create-selection.json", dataset)
    body["name"], body["work_path"]["version_name"] = name, version_name
    op = body["template"]["operator_params"][0]
    op["name"] = "RRD"
    op["params"] = {**{k: v for k, v in op["params"].items() if k != "simlarity_threshold"}, **params}
    op["params"]["do_validation"] = "False"
    return body


def test_rrd_n_clusters_checked_at_submission_and_at_run_time(stack: Stack) -> None:
    files = {f"cat/{n}.jpg": _jpeg(_photo(n, 160)) for n in ("opencv-fruits", "mate-Garden", "opencv-baboon")}
    dataset = _register(stack, "three", files)

    bad = _rrd_body(stack, dataset, "rrd-bad", "V002", n_clusters="zero")
    resp = stack.client.post(f"/v2/{stack.project}/processor-tasks", json=bad)
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "ModelArts.0101" and "n_clusters" in resp.json()["error_msg"]

    too_many = _rrd_body(stack, dataset, "rrd-too-many", "V002", n_clusters="3", sample_ratio="0.7")
    task = stack.run_task(too_many)
    (version,) = stack.versions(task["task_id"])
    assert version.status == 3
    assert "ModelArts.4622" in (version.error_msg or "")
    assert not (version.error_msg or "").startswith("internal error")

    ok = _rrd_body(stack, dataset, "rrd-ok", "V003", n_clusters="2", sample_ratio="0.7")
    task = stack.run_task(ok)
    (version,) = stack.versions(task["task_id"])
    assert version.status == 2, version.error_msg
    results = stack.results(version.id)
    assert sorted(r.result_property for r in results) == [KEPT, KEPT, DELETED]
    (gone,) = [r for r in results if r.result_property == DELETED]
    ev = _evidence(gone, "RRD")
    assert (
        ev["reason"] == "redundant"
        and ev["kept"] is False
        and ev["total_count"] == 3
        and ev["kept_count"] == 2
    )
