"""Processor-task create/list/describe: validation per the reference, envelopes, enqueue after commit."""

from __future__ import annotations

import json
import time

import pytest

from tests.api.conftest import Harness
from tests.conftest import EXAMPLES


def analyse_body(dataset_id: str, name: str = "V001", **extra) -> dict:
    body = json.loads((EXAMPLES / "create-analyse.json").read_text())
    body["name"] = name
    body["data_source"]["source"] = dataset_id
    body.pop("version_id")
    body.update(extra)
    return body


def test_official_analyse_example_is_accepted_as_is(api: Harness) -> None:
    dataset_id = api.register()
    described = api.client.get(f"/v2/p1/datasets/{dataset_id}").json()
    body = json.loads((EXAMPLES / "create-analyse.json").read_text())
    body["data_source"]["source"] = dataset_id  # only the ids are substituted
    body["version_id"] = described["current_version_id"]
    resp = api.client.post("/v2/p1/processor-tasks", json=body)
    assert resp.status_code == 200, resp.text
    task_id = resp.json()["task_id"]
    assert len(task_id) == 19 and task_id.isalnum()
    assert len(api.enqueued) == 1 and api.committed_at_enqueue == [True]

    detail = api.client.get(f"/v2/p1/processor-tasks/{task_id}").json()
    assert detail["status"] == 0 and detail["name"] == "V001"
    assert abs(detail["create_time"] - time.time() * 1000) < 60_000  # milliseconds
    assert detail["duration_seconds"] == 0
    assert detail["data_source"]["name"] == "flowers"
    assert detail["version_id"] == described["current_version_id"]
    assert detail["template"]["id"] == "sys_data_analyse"
    assert "result" not in detail and "error_msg" not in detail


def test_create_version_false_enqueues_nothing_for_processing_templates_rejects_unknown_operator(
    api: Harness,
) -> None:
    dataset_id = api.register()
    body = json.loads((EXAMPLES / "create-validation.json").read_text())
    body["inputs"][0].update(source=dataset_id, version_id=None)
    body["work_path"]["path"] = dataset_id
    body["template"]["operator_params"][0]["name"] = "NoSuchOperator"
    resp = api.client.post("/v2/p1/processor-tasks", json=body)
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "ModelArts.0101"
    assert "NoSuchOperator" in resp.json()["error_msg"]
    assert api.enqueued == []


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda b: b.update(inputs=[b["data_source"]]), "ModelArts.0107"),
        (lambda b: b.pop("data_source"), "ModelArts.0101"),
        (lambda b: b["template"].update(id="sys_data_magic"), "ModelArts.0101"),
        (
            lambda b: b["template"]["operator_params"][0]["params"].update(op_list=["nonsense"]),
            "ModelArts.0101",
        ),
        (lambda b: b["template"]["operator_params"][0]["params"].update(unknown_key="1"), "ModelArts.0101"),
        (lambda b: b.update(description="a<b"), "ModelArts.0101"),
        (lambda b: b.update(description="x" * 257), "ModelArts.0101"),
        (lambda b: b.update(name=""), "ModelArts.0101"),
        (lambda b: b.pop("name"), "ModelArts.0101"),
        (lambda b: b.pop("template"), "ModelArts.0101"),
        (lambda b: b["data_source"].update(source="nosuchdataset000000"), "ModelArts.4352"),
        (lambda b: b["data_source"].update(version_id="nosuchversion000000"), "ModelArts.4353"),
        (lambda b: b["data_source"].update(type="CUSTOM"), "ModelArts.0101"),
        (lambda b: b.update(data_source={"type": "OBS", "source": "/bucket/"}), "ModelArts.4205"),
        (lambda b: b.update(data_source={"type": "OBS", "source": "/bucket/a/../b/"}), "ModelArts.4313"),
        (lambda b: b.update(data_source={"type": "OBS", "source": "/bucket/a//b/"}), "ModelArts.4315"),
    ],
)
def test_invalid_create_requests_get_modelarts_errors(api: Harness, mutate, code: str) -> None:
    body = analyse_body(api.register())
    mutate(body)
    resp = api.client.post("/v2/p1/processor-tasks", json=body)
    assert resp.status_code == 400, resp.text
    payload = resp.json()
    assert set(payload) == {"error_code", "error_msg"} and payload["error_code"] == code
    assert "Traceback" not in payload["error_msg"]
    assert api.enqueued == []


def test_malformed_and_empty_bodies(api: Harness) -> None:
    resp = api.client.post(
        "/v2/p1/processor-tasks", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (resp.status_code, resp.json()["error_code"]) == (400, "ModelArts.4105")
    resp = api.client.post(
        "/v2/p1/processor-tasks", content=b"", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400 and resp.json()["error_code"] in {"ModelArts.4202", "ModelArts.4105"}


def test_oversized_body_is_refused(api: Harness) -> None:
    resp = api.client.post(
        "/v2/p1/processor-tasks",
        content=b"x" * (2 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 413 and resp.json()["error_code"] == "ModelArts.4200"


def test_duplicate_task_name(api: Harness) -> None:
    body = analyse_body(api.register())
    assert api.client.post("/v2/p1/processor-tasks", json=body).status_code == 200
    resp = api.client.post("/v2/p1/processor-tasks", json=body)
    assert (resp.status_code, resp.json()["error_code"]) == (400, "ModelArts.4709")


def test_unknown_task_and_route(api: Harness) -> None:
    resp = api.client.get("/v2/p1/processor-tasks/abcdefghijklmnopqrs")
    assert (resp.status_code, resp.json()["error_code"]) == (400, "ModelArts.4612")
    resp = api.client.get("/v2/p1/no-such-api")
    assert (resp.status_code, resp.json()["error_code"]) == (404, "ModelArts.4204")


def test_list_paging_filters_and_projects(api: Harness) -> None:
    dataset_id = api.register()
    ids = []
    for name in ["alpha", "beta", "gamma"]:
        ids.append(
            api.client.post("/v2/p1/processor-tasks", json=analyse_body(dataset_id, name)).json()["task_id"]
        )
    page = api.client.get("/v2/p1/processor-tasks", params={"limit": 2}).json()
    assert page["count"] == 3 and [t["task_id"] for t in page["tasks"]] == ids[::-1][:2]
    page = api.client.get("/v2/p1/processor-tasks", params={"limit": 2, "offset": 2}).json()
    assert [t["task_id"] for t in page["tasks"]] == [ids[0]]
    page = api.client.get("/v2/p1/processor-tasks", params={"task_name": "amm", "sort_by": "name"}).json()
    assert page["count"] == 1 and page["tasks"][0]["name"] == "gamma"
    page = api.client.get("/v2/p1/processor-tasks", params={"query_current": "true"}).json()
    assert [t["task_id"] for t in page["tasks"]] == [ids[2]]  # newest analysis of that dataset version
    assert page["tasks"][0]["is_current"] is True
    assert api.client.get("/v2/p2/processor-tasks").json() == {"count": 0, "tasks": []}
    assert api.client.get(f"/v2/p2/processor-tasks/{ids[0]}").json()["error_code"] == "ModelArts.4612"
    for bad in ({"limit": 0}, {"limit": 101}, {"sort_by": "color"}, {"order": "up"}, {"status": 9}):
        resp = api.client.get("/v2/p1/processor-tasks", params=bad)
        assert (resp.status_code, resp.json()["error_code"]) == (400, "ModelArts.0101"), bad


def test_health_and_openapi(api: Harness) -> None:
    assert api.client.get("/health/live").json() == {"status": "ok"}
    ready = api.client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["database"] == "ok" and ready.json()["storage"] == "ok"
    spec = api.client.get("/openapi.json").json()
    assert "/v2/{project_id}/processor-tasks" in spec["paths"]
    assert "/v2/{project_id}/datasets/{dataset_id}" in spec["paths"]


def test_running_versions_per_project_are_capped(api: Harness) -> None:
    dataset_id = api.register()
    for i in range(20):  # the default cap; the harness never runs them, so all stay queued
        assert (
            api.client.post("/v2/p1/processor-tasks", json=analyse_body(dataset_id, f"t{i}")).status_code
            == 200
        )
    resp = api.client.post("/v2/p1/processor-tasks", json=analyse_body(dataset_id, "one-too-many"))
    assert (resp.status_code, resp.json()["error_code"]) == (400, "ModelArts.4409")
    assert len(api.enqueued) == 20
    dataset_p2 = api.register(name="other", project="p2")
    assert api.client.post("/v2/p2/processor-tasks", json=analyse_body(dataset_p2)).status_code == 200


@pytest.mark.parametrize("offset", ["-1", str(2**31), str(2**63)])
def test_task_and_version_lists_refuse_offsets_out_of_range(api: Harness, offset: str) -> None:
    """An offset past 2³¹−1 is a 400, never an overflow in the database driver (found by schemathesis)."""
    dataset_id = api.register()
    task_id = api.client.post("/v2/p1/processor-tasks", json=analyse_body(dataset_id, "t")).json()["task_id"]
    for path in (
        "/v2/p1/processor-tasks",
        "/v2/p1/processor-tasks/items",
        f"/v2/p1/processor-tasks/{task_id}/versions",
    ):
        resp = api.client.get(path, params={"offset": offset})
        assert resp.status_code == 400 and resp.json()["error_code"] == "ModelArts.0101", (path, resp.text)
