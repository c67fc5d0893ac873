"""Task versions, results with signed URLs, update/delete, items — through the API with the real runner."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from api.signing import _mac, verify
from tests.conftest import EXAMPLES, PHOTOS
from tests.support.stack import Stack, in_process_stack


@pytest.fixture
def stack(tmp_path: Path, db_url: str):
    with in_process_stack(tmp_path, db_url) as s:
        for path in sorted(PHOTOS.glob("*.jpg"))[:3]:
            s.put_file("data", f"imgs/{path.name}", path.read_bytes())
        yield s


def test_versions_results_and_signed_urls(stack: Stack) -> None:
    dataset = stack.create_dataset("ds", "/data/imgs/")
    body = stack.example(EXAMPLES / "create-validation.json", dataset)
    task = stack.run_task(body)
    assert task["status"] == 2, task
    base = f"/v2/p1/processor-tasks/{task['task_id']}/versions"
    listing = stack.client.get(base).json()
    assert listing["count"] == 1
    version = listing["versions"][0]
    assert version["version_name"] == "V0001" and version["status"] == 2
    counts = {k: version[f"{k}_sample_count"] for k in ("origin", "unmodified", "modified", "deleted", "add")}
    assert counts["origin"] == 3 == counts["unmodified"] + counts["modified"] + counts["deleted"]
    assert version["work_path"]["output_path"].endswith(f"/{version['task_version_id']}/")
    detail = stack.client.get(f"{base}/{version['task_version_id']}").json()
    assert detail == version

    results = stack.client.get(f"{base}/{version['task_version_id']}/results", params={"limit": 2}).json()
    assert results["count"] == 3 and results["has_more"] is True and len(results["results"]) == 2
    first = results["results"][0]
    assert first["version_id"] == version["task_version_id"] and len(first["sample_id"]) == 32
    signed = urlparse(first["signed_new_source"])
    fetched = stack.client.get(f"{signed.path}?{signed.query}")
    assert fetched.status_code == 200 and fetched.content[:2] == b"\xff\xd8"  # the JPEG written to Data/
    query = parse_qs(signed.query)
    tampered = stack.client.get(
        signed.path, params={**{k: v[0] for k, v in query.items()}, "uri": first["origin_source"]}
    )
    assert (tampered.status_code, tampered.json()["error_code"]) == (403, "ModelArts.0203")
    other_project = stack.client.get(signed.path.replace("/p1/", "/p2/") + "?" + signed.query)
    assert other_project.status_code == 403
    kept = stack.client.get(f"{base}/{version['task_version_id']}/results", params={"result_property": "2"})
    assert kept.json()["count"] == counts["deleted"]
    bad = stack.client.get(f"{base}/{version['task_version_id']}/results", params={"result_property": "7"})
    assert bad.json()["error_code"] == "ModelArts.0101"


def test_new_version_needs_a_new_dataset_version_name(stack: Stack) -> None:
    dataset = stack.create_dataset("ds", "/data/imgs/")
    body = stack.example(EXAMPLES / "create-validation.json", dataset)
    task = stack.run_task(body)
    base = f"/v2/p1/processor-tasks/{task['task_id']}/versions"
    again = stack.client.post(base, json={"name": body["name"]})
    assert again.json()["error_code"] == "ModelArts.4371"  # V0010 exists now
    body["work_path"]["version_name"] = "V0011"
    resp = stack.client.post(base, json={"name": body["name"], "work_path": body["work_path"]})
    assert resp.status_code == 200, resp.text
    versions = stack.client.get(base).json()["versions"]
    assert [v["version_name"] for v in versions] == ["V0002", "V0001"]
    assert all(v["status"] == 2 for v in versions)
    described = stack.client.get(f"/v2/p1/datasets/{dataset['dataset_id']}").json()
    assert described["current_version_name"] == "V0011"
    unknown = stack.client.post(base, json={"name": "x", "bogus_field": 1})
    assert unknown.status_code == 400 and "bogus_field" in unknown.json()["error_msg"]


def test_update_delete_items_and_unknown_versions(stack: Stack) -> None:
    dataset = stack.create_dataset("ds", "/data/imgs/")
    task = stack.run_task(stack.example(EXAMPLES / "create-analyse.json", dataset))
    url = f"/v2/p1/processor-tasks/{task['task_id']}"
    assert stack.client.put(url, json={"description": "checked"}).json() == {}
    assert stack.client.get(url).json()["description"] == "checked"
    assert stack.client.put(url, json={"description": "a=b"}).json()["error_code"] == "ModelArts.0101"
    assert stack.client.put(url, json={"name": "renamed"}).json()["error_code"] == "ModelArts.0101"
    resp = stack.client.get(f"{url}/versions/abcdefghijklmnopqrs")
    assert (resp.status_code, resp.json()["error_code"]) == (400, "ModelArts.4851")
    items = stack.client.get("/v2/p1/processor-tasks/items").json()
    assert items["total"] == 4 and {i["template_id"] for i in items["items"]} == {
        "sys_data_cleaning",
        "sys_data_validation",
        "sys_data_selection",
        "sys_data_augmentation",
    }
    version_id = stack.client.get(f"{url}/versions").json()["versions"][0]["task_version_id"]
    assert stack.client.delete(f"{url}/versions/{version_id}").status_code == 204
    assert stack.client.get(f"{url}/versions").json()["count"] == 0
    assert stack.client.delete(url).json() == {}
    assert stack.client.get(url).json()["error_code"] == "ModelArts.4612"


def test_signature_rules() -> None:
    mac = _mac("k", "p1", "obs://b/x.jpg", 2_000_000_000)
    assert verify("k", "p1", "obs://b/x.jpg", 2_000_000_000, mac, now=1_000)
    assert not verify("k", "p1", "obs://b/x.jpg", 2_000_000_000, mac, now=2_000_000_001)  # expired
    assert not verify("k", "p2", "obs://b/x.jpg", 2_000_000_000, mac, now=1_000)  # other project
    assert not verify("k", "p1", "obs://b/y.jpg", 2_000_000_000, mac, now=1_000)
    assert not verify("k", "p1", "obs://b/x.jpg", 2_000_000_000, "\x80é", now=1_000)  # no crash on junk


def test_task_input_reads_the_newest_completed_output(stack: Stack) -> None:
    dataset = stack.create_dataset("ds", "/data/imgs/")
    validated = stack.run_task(stack.example(EXAMPLES / "create-validation.json", dataset))
    assert validated["status"] == 2
    stack.store.ensure_bucket("flips")
    body = {
        "name": "on-output",
        "data_source": {"type": "TASK", "source": validated["task_id"]},
        "work_path": {"type": "OBS", "path": "/flips/out/"},
        "create_version": True,
        "template": {
            "id": "sys_data_augmentation",
            "operator_params": [{"name": "Flip", "params": {"do_validation": "False"}}],
        },
    }
    flipped = stack.run_task(body)
    assert flipped["status"] == 2, flipped.get("error_msg")
    records = stack.results(stack.versions(flipped["task_id"])[0].id)
    output = stack.versions(validated["task_id"])[0].output_path  # /bucket/…/{version id}/
    origins = {r.origin_source for r in records}
    assert len(origins) == 3 and all(o.startswith(f"obs:/{output}Data/") for o in origins)
    body["name"] = "no-output"
    body["data_source"]["source"] = "abcdefghijklmnopqrs"
    assert stack.client.post("/v2/p1/processor-tasks", json=body).json()["error_code"] == "ModelArts.4612"
