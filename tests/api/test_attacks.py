"""Attack strings in every untrusted string that reaches storage keys, SQL or paths: 4xx, never 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import Harness

ATTACKS = [
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "%2e%2e/%2e%2e/etc",
    "a\x00b",
    "x" * 2000,
    "'; DROP TABLE processor_tasks; --",
    "\u202eevil",
    "obs://other-bucket/../../etc/",
    "C:\\Windows\\system32",
]


def _analyse(dataset_id: str, **over) -> dict:
    body = {
        "name": "t",
        "data_source": {"type": "DATASET", "source": dataset_id},
        "template": {"id": "sys_data_analyse", "operator_params": []},
    }
    body.update(over)
    return body


def _assert_client_error(resp) -> None:  # type: ignore[no-untyped-def]
    assert 400 <= resp.status_code < 500, resp.text
    assert set(resp.json()) == {"error_code", "error_msg"}


@pytest.mark.parametrize("attack", ATTACKS)
def test_task_fields(api: Harness, attack: str, tmp_path: Path) -> None:
    from storage.errors import StorageError
    from storage.uris import parse_uri

    def valid_object_path(text: str) -> bool:
        try:
            parse_uri(text)
        except StorageError:
            return False
        return "//" not in text.split("://", 1)[-1]

    dataset_id = api.register()
    for i, body in enumerate(
        (
            _analyse(dataset_id, name=attack),
            _analyse(dataset_id, description=attack + "<"),
            _analyse(dataset_id, data_source={"type": "OBS", "source": attack}),
            _analyse(dataset_id, data_source={"type": "DATASET", "source": attack}),
            _analyse(dataset_id, data_source={"type": "TASK", "source": attack}),
            _analyse(dataset_id, work_path={"type": "OBS", "path": attack}),
            _analyse(dataset_id, version_id=attack, data_source={"type": "DATASET", "source": dataset_id}),
        )
    ):
        if i:
            body["name"] = f"t{i}"
        resp = api.client.post("/v2/p1/processor-tasks", json=body)
        if resp.status_code == 200:
            # Accepted only as plain data: a name stored verbatim, or a well-formed object path
            # (``/etc/passwd`` is bucket ``etc``, key ``passwd``, inside the storage root).
            task = api.client.get(f"/v2/p1/processor-tasks/{resp.json()['task_id']}").json()
            paths = [task["inputs"][0].get("source", ""), (task.get("work_path") or {}).get("path", "")]
            assert task["name"] == body["name"]
            assert i == 0 or any(valid_object_path(p) and p == attack for p in paths)
        else:
            _assert_client_error(resp)
    assert api.client.get("/v2/p1/processor-tasks").status_code == 200  # tables still there


@pytest.mark.parametrize("attack", ATTACKS)
def test_path_parameters(api: Harness, attack: str) -> None:
    from urllib.parse import quote

    q = quote(attack, safe="")
    for url in (
        f"/v2/p1/processor-tasks/{q}",
        f"/v2/p1/processor-tasks/{q}/versions",
        f"/v2/p1/processor-tasks/{q}/versions/{q}/results",
        f"/v2/p1/datasets/{q}",
        f"/v2/{q}/processor-tasks",
    ):
        resp = api.client.get(url)
        _assert_client_error(resp)


@pytest.mark.parametrize("attack", ATTACKS)
def test_signed_object_urls_refuse_forged_uris(api: Harness, attack: str) -> None:
    resp = api.client.get("/v2/p1/objects", params={"uri": attack, "expires": 9999999999, "signature": "00"})
    _assert_client_error(resp)


def test_nothing_escapes_the_storage_root(api: Harness, tmp_path: Path) -> None:
    before = {p for p in tmp_path.parent.rglob("*")} if tmp_path.parent.exists() else set()
    dataset_id = api.register()
    for attack in ATTACKS:
        api.client.post(
            "/v2/p1/processor-tasks", json=_analyse(dataset_id, work_path={"type": "OBS", "path": attack})
        )
        api.client.post(
            "/v2/p1/datasets",
            json={
                "dataset_name": "x",
                "data_sources": [{"data_path": attack}],
                "work_path": attack,
                "work_path_type": 0,
            },
        )
    after = {p for p in tmp_path.parent.rglob("*")}
    outside = [p for p in after - before if not str(p).startswith(str(api.root))]
    assert [p for p in outside if "meta.db" not in p.name and "storage" not in str(p)] == []
