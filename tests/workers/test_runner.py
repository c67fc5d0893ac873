"""The runner on a real DB and store: claim, terminal states, per-sample findings, duplicates, poison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import update

from storage.db.engine import session_scope
from storage.db.ids import now_ms
from storage.db.models import TaskVersion
from storage.db.repositories import TaskRepository
from storage.manifest import sample_id
from tests.conftest import EXAMPLES, PHOTOS
from tests.support.stack import Stack, in_process_stack
from workers.context import WorkerContext
from workers.runner import run_version


@pytest.fixture
def stack(tmp_path: Path, db_url: str):
    with in_process_stack(tmp_path, db_url) as s:
        yield s


def _dataset(stack: Stack, n: int = 4, extra: dict[str, bytes] | None = None) -> dict:
    for path in sorted(PHOTOS.glob("*.jpg"))[:n]:
        stack.put_file("data", f"imgs/{path.name}", path.read_bytes())
    for name, data in (extra or {}).items():
        stack.put_file("data", f"imgs/{name}", data)
    return stack.create_dataset("ds", "/data/imgs/")


def _analyse(stack: Stack, dataset: dict, name: str = "V001") -> dict:
    body = stack.example(EXAMPLES / "create-analyse.json", dataset)
    body["name"] = name
    return stack.run_task(body)


def _orphan(stack: Stack, version_id: str, deliveries: int) -> None:
    """Leave a version as a dead worker would: RUNNING, with a heartbeat ten minutes old."""
    with session_scope(stack.sessions) as s:
        s.execute(
            update(TaskVersion)
            .where(TaskVersion.id == version_id)
            .values(status=1, deliveries=deliveries, update_time=now_ms() - 600_000)
        )


def _ctx(stack: Stack) -> WorkerContext:
    from dsproc.settings import Settings

    return WorkerContext(Settings(), stack.sessions.kw["bind"], stack.sessions, stack.store)


def test_analysis_completes_with_records_counters_and_json(stack: Stack) -> None:
    dataset = _dataset(stack)
    task = _analyse(stack, dataset)
    assert task["status"] == 2 and stack.states == ["completed"]
    version = stack.versions(task["task_id"])[0]
    assert (version.origin_sample_count, version.unmodified_sample_count, version.deleted_sample_count) == (
        4,
        4,
        0,
    )
    records = stack.results(version.id)
    assert len(records) == 4
    assert {r.sample_id for r in records} == {sample_id(r.origin_source) for r in records}
    assert all("blurriness" in r.result_description[0]["metrics"] for r in records)
    stored = (
        stack.root / "out" / "work" / f"ds-{dataset['dataset_id']}" / "annotation" / "evaluation" / "V001"
    )
    assert json.loads((stored / "analysis_result.json").read_text()) == task["result"]


def test_a_corrupt_image_is_a_per_sample_finding(stack: Stack) -> None:
    good = (PHOTOS / "opencv-fruits.jpg").read_bytes()
    dataset = _dataset(
        stack, 2, {"truncated.jpg": good[: len(good) // 3], "text.jpg": b"hello, not an image"}
    )
    task = _analyse(stack, dataset)
    assert task["status"] == 2
    result = task["result"]
    assert result["sample_count"] == 4 and result["analysed_count"] == 2
    failed = {f["source"].rsplit("/", 1)[-1] for f in result["failed"]}
    assert failed == {"truncated.jpg", "text.jpg"}
    version = stack.versions(task["task_id"])[0]
    errors = [r for r in stack.results(version.id) if "error" in r.result_description[0]]
    assert len(errors) == 2


def test_second_delivery_does_nothing(stack: Stack) -> None:
    task = _analyse(stack, _dataset(stack, 2))
    version = stack.versions(task["task_id"])[0]
    before = [(r.sample_id, r.result_description) for r in stack.results(version.id)]
    assert run_version(_ctx(stack), version.id) == "done"
    after = stack.versions(task["task_id"])[0]
    assert after.status == 2 and after.finished_at == version.finished_at
    assert [(r.sample_id, r.result_description) for r in stack.results(version.id)] == before


def test_a_version_whose_worker_keeps_dying_fails_instead_of_looping(stack: Stack) -> None:
    task = _analyse(stack, _dataset(stack, 2))
    version_id = stack.versions(task["task_id"])[0].id
    _orphan(stack, version_id, deliveries=3)  # its worker died three times already
    assert run_version(_ctx(stack), version_id) == "failed"
    version = stack.versions(task["task_id"])[0]
    assert version.status == 3 and "gave up after 3 attempts" in version.error_msg


def test_a_stale_running_version_is_taken_over_and_completed(stack: Stack) -> None:
    task = _analyse(stack, _dataset(stack, 2))
    version_id = stack.versions(task["task_id"])[0].id
    _orphan(stack, version_id, deliveries=1)
    assert run_version(_ctx(stack), version_id) == "completed"
    assert stack.versions(task["task_id"])[0].deliveries == 2


def test_a_version_stopped_while_queued_never_starts(stack: Stack) -> None:
    dataset = _dataset(stack, 2)
    body = stack.example(EXAMPLES / "create-analyse.json", dataset)
    # Create the task without running it, then stop it, then deliver the message.
    with session_scope(stack.sessions) as s:
        from api.schemas.processor_tasks import CreateProcessorTaskRequest
        from api.services.processor_tasks import create_task

        _, version_id = create_task(s, "p1", CreateProcessorTaskRequest.model_validate(body))
    with session_scope(stack.sessions) as s:
        assert TaskRepository(s).request_stop(version_id) == 4
    assert run_version(_ctx(stack), version_id) == "done"
    with session_scope(stack.sessions) as s:
        version = TaskRepository(s).get_version(version_id)
        assert version.status == 4 and version.started_at is None


def test_missing_input_manifest_fails_with_error_msg(stack: Stack) -> None:
    dataset = _dataset(stack, 2)
    manifest = (
        stack.root / "out" / "work" / f"ds-{dataset['dataset_id']}" / "annotation" / "V001" / "V001.manifest"
    )
    manifest.unlink()
    task = _analyse(stack, dataset)
    assert task["status"] == 3
    assert "cannot read input" in task["error_msg"] and "Traceback" not in task["error_msg"]


def test_huge_header_is_rejected_without_crashing(stack: Stack) -> None:
    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = (30000).to_bytes(4, "big") + (30000).to_bytes(4, "big")  # IHDR width/height
    task = _analyse(stack, _dataset(stack, 1, {"bomb.png": bytes(data)}))
    assert task["status"] == 2
    assert [f["source"].rsplit("/", 1)[-1] for f in task["result"]["failed"]] == ["bomb.png"]
