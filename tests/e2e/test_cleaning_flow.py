"""sys_data_cleaning (PCC) through the API: the official create-cleaning.json body.

Runs the real API app and the real runner in-process (``tests/support/stack.py``). The dataset is
Fashion-MNIST images of two wanted classes (Trouser, Bag) plus four images of other classes; the
prototypes are other Trouser and Bag images uploaded to the local object store. Substituted in the
example: the dataset ids, ``prototype_sample_path`` (the example's ``obs://test-obs/...`` folder
does not exist here) and ``checkpoint_path``: the example names a folder inside a ModelArts job
container (``/home/work/user-job-dir/...``), which does not exist on this machine, so it is emptied
(default backbone) or pointed at a real resnet18 checkpoint in the store; run as-is it fails with a
clear error, which is checked too.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

from storage.db.repositories import DatasetRepository
from storage.manifest import IMAGE_CLASSIFICATION
from storage.uris import parse_uri
from tests.conftest import EXAMPLES, FASHION
from tests.support.stack import Stack, in_process_stack

pytestmark = pytest.mark.e2e
IN, OUT = "clean-in", "clean-out"
MODIFIED, DELETED = 1, 2
WANTED = ("Trouser", "Bag")
N_PROTOS, N_SAMPLES = 10, 12
CONTAMINANTS = {"Coat": 2, "Sneaker": 1, "Dress": 1, "Sandal": 1, "Ankle_boot": 1}
PROTOTYPES = f"obs://{IN}/exemplars/prototypes/"


def _pngs(label: str) -> list[Path]:
    return sorted((FASHION / label).glob("*.png"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with in_process_stack(tmp_path_factory.mktemp("cleaning")) as s:
        s.store.ensure_bucket(IN)
        s.store.ensure_bucket(OUT)
        yield s


@pytest.fixture(scope="module")
def dataset(stack: Stack) -> dict:
    """Samples under ``samples/{label}/`` (the classification folder layout) and exemplars beside."""
    for label in WANTED:
        paths = _pngs(label)
        for p in paths[:N_PROTOS]:
            stack.put_file(IN, f"exemplars/prototypes/{label}/{p.name}", p.read_bytes())
        for p in paths[N_PROTOS : N_PROTOS + N_SAMPLES]:
            stack.put_file(IN, f"samples/{label}/{p.name}", p.read_bytes())
    for label, count in CONTAMINANTS.items():
        for p in _pngs(label)[:count]:
            stack.put_file(IN, f"samples/{label}/{p.name}", p.read_bytes())
    return stack.create_dataset("fashion", f"/{IN}/samples/", work_path=f"/{OUT}/fashion/")


def _body(stack: Stack, dataset: dict, version_name: str, **params: str) -> dict:
    body = stack.example(EXAMPLES / "create-cleaning.json", dataset, **params)
    body["work_path"]["version_name"] = version_name
    body["name"] = f"clean-{version_name}-{uuid.uuid4().hex[:8]}"
    return body


def _pcc(result: Any) -> dict[str, Any]:
    (found,) = [e for e in result.result_description if e.get("operator") == "PCC"]
    return found


def _manifest(stack: Stack, output_path: str) -> list[dict[str, Any]]:
    root = parse_uri(output_path if output_path.endswith("/") else output_path + "/")
    text = stack.store.get_bytes(root.bucket, root.key + "output.manifest").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cleaning_example_keeps_the_wanted_classes_into_v004(stack: Stack, dataset: dict) -> None:
    body = _body(stack, dataset, "V004", prototype_sample_path=PROTOTYPES, checkpoint_path="")
    params = body["template"]["operator_params"][0]["params"]
    assert params["criticism_sample_path"] == "" and params["n_clusters"] == "auto"
    assert body["template"]["id"] == "sys_data_cleaning"

    task = stack.run_task(body)
    (version,) = stack.versions(task["task_id"])
    assert version.status == 2, version.error_msg
    results = {r.origin_source.split("/samples/", 1)[1]: r for r in stack.results(version.id)}
    n_wanted = N_SAMPLES * len(WANTED)
    assert len(results) == n_wanted + sum(CONTAMINANTS.values())

    # do_validation is "True": MetaValidation turns the grey PNGs into RGB first, so kept samples
    # are "modified" (result_property 1) and renamed *_checked.png.
    kept_wanted = sum(
        r.result_property == MODIFIED for rel, r in results.items() if rel.split("/")[0] in WANTED
    )
    dropped_other = sum(
        r.result_property == DELETED for rel, r in results.items() if rel.split("/")[0] not in WANTED
    )
    assert kept_wanted >= n_wanted - 4, kept_wanted
    assert dropped_other >= sum(CONTAMINANTS.values()) - 1, dropped_other
    for rel, result in results.items():
        ev = _pcc(result)
        assert result.result_property in (MODIFIED, DELETED)
        assert ev["kept"] is (result.result_property == MODIFIED)
        assert ev["prototype"].startswith(PROTOTYPES) and ev["model"].startswith("efficientnet-lite0/")
        assert isinstance(ev["similarity"], float) and isinstance(ev["similarity_floor"], float)
        if result.result_property == DELETED:
            assert result.new_source is None
            assert ev["rule"] in ("below_similarity_floor", "near_copy_of_criticism", "closer_to_criticism")
        else:
            assert result.new_source.endswith(f"/Data/{rel[: -len('.png')]}_checked.png")
            assert ev["rule"] in ("similar_to_prototype", "near_copy_of_prototype")

    kept = sorted(rel for rel, r in results.items() if r.result_property == MODIFIED)
    manifest = _manifest(stack, version.output_path)
    written = sorted(line["source"].split("/Data/")[1].replace("_checked.png", ".png") for line in manifest)
    assert written == kept
    for line in manifest:
        label = line["source"].split("/Data/")[1].split("/")[0]
        (annotation,) = line["annotation"]  # the label from the folder layout, carried over
        assert (annotation["type"], annotation["name"]) == (IMAGE_CLASSIFICATION, label)
        assert line["property"]["@modelarts:data_checked"] is True
    assert version.deleted_sample_count == len(results) - len(kept)
    assert version.modified_sample_count == len(kept) and version.unmodified_sample_count == 0
    with stack.sessions() as s:
        versions = {v.name: v for v in DatasetRepository(s).versions(dataset["dataset_id"])}
    assert versions["V004"].total_sample_count == len(kept)


def test_cleaning_with_a_user_checkpoint(stack: Stack, dataset: dict) -> None:
    buf = io.BytesIO()
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), buf)
    stack.put_file(IN, "models/resnet18.pth", buf.getvalue())
    body = _body(
        stack,
        dataset,
        "V005",
        prototype_sample_path=PROTOTYPES,
        checkpoint_path=f"obs://{IN}/models/resnet18.pth",
    )
    task = stack.run_task(body)
    (version,) = stack.versions(task["task_id"])
    assert version.status == 2, version.error_msg
    results = stack.results(version.id)
    assert results and all("resnet18" in _pcc(r)["model"] for r in results)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"checkpoint_path": f"obs://{IN}/models/broken.pth"},
            "PCC: checkpoint_path: cannot load checkpoint",
        ),
        ({}, "checkpoint_path /home/work/user-job-dir/test-lxm/resnet_v1_50 is neither a local file"),
        ({"checkpoint_path": "", "n_clusters": "30"}, "ModelArts.4622"),
        ({"checkpoint_path": "", "prototype_sample_path": f"obs://{IN}/nothing-here/"}, "holds 0 readable"),
    ],
)
def test_cleaning_failures_carry_a_clear_error_msg(
    stack: Stack, dataset: dict, params: dict[str, str], message: str
) -> None:
    stack.put_file(IN, "models/broken.pth", b"PK\x03\x04 this is not a checkpoint")
    body = _body(stack, dataset, "V009", **{"prototype_sample_path": PROTOTYPES, **params})
    task = stack.run_task(body)
    (version,) = stack.versions(task["task_id"])
    assert version.status == 3
    assert message in (version.error_msg or ""), version.error_msg
    assert not (version.error_msg or "").startswith("internal error")


def test_invalid_params_are_a_400(stack: Stack, dataset: dict) -> None:
    for params in ({"n_clusters": "many"}, {"simlarity_threshold": "2"}, {"prototype_sample_path": ""}):
        body = _body(stack, dataset, "V010", **params)
        resp = stack.client.post(f"/v2/{stack.project}/processor-tasks", json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error_code"] == "ModelArts.0101"
