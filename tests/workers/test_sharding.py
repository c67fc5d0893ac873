"""Sharded selection passes: same verdicts as one pass, helpers, failures, claims and takeover.

The in-process stack runs the real API and runner; ``spawn_helpers`` stands in for the Celery
message (the real multi-worker run over Redis is in ``tests/e2e/test_sharded_selection.py``).
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from operators.decode import decode_image
from operators.selection.dedup import SimDeduplication
from storage.db.engine import make_engine, make_session_factory, session_scope
from storage.db.ids import now_ms
from storage.db.models import ProcessorTask, TaskVersion, VersionShard
from storage.db.shards import DONE, PENDING, RUNNING, ShardRepository, ShardSpec
from storage.manifest import IMAGE_CLASSIFICATION
from storage.uris import parse_uri
from tests.conftest import EXAMPLES, PHOTOS
from tests.support.stack import Stack, in_process_stack
from workers.jobs.sharding import decode_features, encode_features, help_with_shards

IN, OUT = "shard-in", "shard-out"
DELETED = 2
NAMES = [
    "opencv-fruits",
    "opencv-baboon",
    "mate-Garden",
    "opencv-butterfly",
    "opencv-starry_night",
    "mate-LadyBird",
    "opencv-messi5",
    "opencv-home",
]


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _files() -> dict[str, bytes]:
    """8 photos, a recompressed and a half-size copy of each, and identical bytes far apart, so that
    duplicates straddle shard boundaries; plus one truncated file."""
    names = [n for n in NAMES if (PHOTOS / f"{n}.jpg").exists()]
    assert len(names) >= 6, "the photo set lost the files this test relies on"
    files: dict[str, bytes] = {}
    for name in names:
        pixels = np.array(decode_image((PHOTOS / f"{name}.jpg").read_bytes(), max_side=400).pixels)
        files[f"a/{name}.jpg"] = _jpeg(pixels, 92)
    for name in names:
        pixels = np.array(decode_image((PHOTOS / f"{name}.jpg").read_bytes(), max_side=400).pixels)
        files[f"b/{name}_q40.jpg"] = _jpeg(pixels, 40)
        half = np.array(Image.fromarray(pixels).resize((pixels.shape[1] // 2, pixels.shape[0] // 2)))
        files[f"b/{name}_half.jpg"] = _jpeg(half, 90)
    for name in names[:3]:
        files[f"c/{name}_same.jpg"] = files[f"a/{name}.jpg"]
    files["c/broken.jpg"] = files[f"a/{names[0]}.jpg"][:500]
    return files


FILES = _files()


def _run(stack: Stack) -> tuple[Any, dict[str, Any]]:
    for rel, data in FILES.items():
        stack.put_file(IN, f"set/{rel}", data)
    lines = [
        {"source": f"obs://{IN}/set/{rel}", "annotation": [{"type": IMAGE_CLASSIFICATION, "name": "x"}]}
        for rel in FILES
    ]
    stack.put_file(IN, "set/input.manifest", "".join(json.dumps(x) + "\n" for x in lines).encode())
    stack.store.ensure_bucket(OUT)
    dataset = stack.create_dataset("set", f"/{IN}/set/input.manifest", work_path=f"/{OUT}/set/")
    task = stack.run_task(stack.example(EXAMPLES / "create-selection.json", dataset))
    (version,) = stack.versions(task["task_id"])
    return version, {r.origin_source.rsplit("/set/", 1)[1]: r for r in stack.results(version.id)}


def _decisions(results: dict[str, Any]) -> dict[str, tuple[int, list[dict[str, Any]]]]:
    return {rel: (r.result_property, r.result_description) for rel, r in results.items()}


def _shards(stack: Stack, version_id: str) -> list[VersionShard]:
    with stack.sessions() as s:
        rows = s.query(VersionShard).filter_by(task_version_id=version_id).order_by(VersionShard.shard_index)
        return list(rows)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference: the same task with sharding off."""
    with in_process_stack(tmp_path_factory.mktemp("plain"), shard_size=0, batch_size=4) as stack:
        version, results = _run(stack)
        assert version.status == 2, version.error_msg
        assert _shards(stack, version.id) == []
        return _decisions(results)


def test_sharded_pass_decides_exactly_as_one_pass(tmp_path: Path, plain: dict[str, Any]) -> None:
    with in_process_stack(tmp_path, shard_size=6, batch_size=4) as stack:  # shards of 8 (2 batches)
        version, results = _run(stack)
        assert version.status == 2, version.error_msg
        assert _decisions(results) == plain
        deleted = {rel for rel, (prop, _) in plain.items() if prop == DELETED}
        assert {"c/broken.jpg", "c/opencv-fruits_same.jpg"} <= deleted  # the set really holds duplicates
        assert sum(rel.startswith("b/") for rel in deleted) >= 10
        shards = _shards(stack, version.id)
        assert [s.count for s in shards] == [8, 8, 8, 4]
        assert [s.start for s in shards] == [0, 8, 16, 24]
        assert all(s.state == DONE and s.manifest == "" for s in shards)
        assert len({s.owner for s in shards}) == 1  # alone: the coordinator extracted every shard
        leftovers = [i.key for i in stack.store.list(OUT) if "/.shards/" in i.key]
        assert leftovers == []
        assert version.progress == len(FILES)  # processed_sample_count of a completed version


def test_helpers_extract_and_the_coordinator_absorbs(tmp_path: Path, plain: dict[str, Any]) -> None:
    """A helper asked for help runs before the coordinator claims anything and takes every shard:
    the coordinator only reads the stored features back."""
    asked: list[tuple[str, int, int]] = []
    done: list[int] = []

    def helper(ctx: Any, version_id: str, pass_index: int, helpers: int) -> None:
        asked.append((version_id, pass_index, helpers))
        done.append(help_with_shards(ctx, version_id, pass_index))

    with in_process_stack(
        tmp_path, spawn_helpers=helper, shard_size=8, batch_size=4, shard_helpers=2
    ) as stack:
        version, results = _run(stack)
        assert version.status == 2, version.error_msg
        assert _decisions(results) == plain
        assert asked == [(version.id, 1, 2)]  # pass 1: MetaValidation runs first (do_validation)
        assert done == [4]
        shards = _shards(stack, version.id)
        assert len({s.owner for s in shards}) == 1 and all(s.attempts == 1 for s in shards)


def test_a_concurrent_helper_thread_changes_nothing(tmp_path: Path, plain: dict[str, Any]) -> None:
    threads: list[threading.Thread] = []

    def helper(ctx: Any, version_id: str, pass_index: int, helpers: int) -> None:
        for _ in range(helpers):
            thread = threading.Thread(target=help_with_shards, args=(ctx, version_id, pass_index))
            thread.start()
            threads.append(thread)

    with in_process_stack(tmp_path, spawn_helpers=helper, shard_size=4, batch_size=4) as stack:
        version, results = _run(stack)
        for thread in threads:
            thread.join(60)
        assert version.status == 2, version.error_msg
        assert _decisions(results) == plain
        shards = _shards(stack, version.id)
        assert len(shards) == 7 and all(s.state == DONE and s.attempts == 1 for s in shards)


@pytest.mark.parametrize("with_helper", [True, False], ids=["helper", "alone"])
def test_a_failing_shard_fails_the_version_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_helper: bool
) -> None:
    """Whether a helper or the coordinator hit the failure, the version fails with the same message."""
    real = SimDeduplication.extract

    def extract(self: SimDeduplication, batch: list[Any]) -> dict[str, np.ndarray]:
        if any("_half" in s.source and "baboon" in s.source for s in batch):
            raise RuntimeError("disk on fire")
        return real(self, batch)

    monkeypatch.setattr(SimDeduplication, "extract", extract)

    def helper(ctx: Any, version_id: str, pass_index: int, helpers: int) -> None:
        help_with_shards(ctx, version_id, pass_index)

    spawn = helper if with_helper else None
    with in_process_stack(tmp_path, spawn_helpers=spawn, shard_size=8, batch_size=4) as stack:
        version, results = _run(stack)
        assert version.status == 3
        assert (
            "SimDeduplication: shard 1 (samples 8–15) failed: RuntimeError: disk on fire" in version.error_msg
        )
        assert results == {}  # a failed version keeps no per-sample records
        assert _shards(stack, version.id) == []  # nor shards: a helper still at work finds none left
        assert [i.key for i in stack.store.list(OUT) if "/.shards/" in i.key] == []


def test_lost_features_are_extracted_again(tmp_path: Path, plain: dict[str, Any]) -> None:
    """A done shard whose features object is gone (an earlier delivery's clean-up) is extracted
    again by the coordinator instead of failing the version."""

    def helper(ctx: Any, version_id: str, pass_index: int, helpers: int) -> None:
        help_with_shards(ctx, version_id, pass_index)
        with session_scope(ctx.sessions) as s:
            ref = parse_uri(s.get(VersionShard, (version_id, pass_index, 1)).features_uri)
        ctx.store.delete(ref.bucket, ref.key)

    with in_process_stack(tmp_path, spawn_helpers=helper, shard_size=8, batch_size=4) as stack:
        version, results = _run(stack)
        assert version.status == 2, version.error_msg
        assert _decisions(results) == plain
        assert [s.attempts for s in _shards(stack, version.id)] == [1, 2, 1, 1]


def test_helpers_leave_a_version_that_is_not_running(tmp_path: Path) -> None:
    with in_process_stack(tmp_path, shard_size=8, batch_size=4) as stack:
        version, _ = _run(stack)
        assert version.status == 2
        assert stack.worker is not None
        assert help_with_shards(stack.worker, version.id, 1) == 0  # completed: nothing to do
        assert help_with_shards(stack.worker, "no-such-version", 1) == 0


def test_features_round_trip_without_pickles() -> None:
    batches = [
        {"ids": np.array(["a", "bé"]), "rows": np.arange(2), "emb": np.ones((2, 3), np.float32)},
        {"ids": np.array([], dtype=str), "emb": np.zeros((0, 0), np.float32)},
    ]
    back = decode_features(encode_features(batches))
    assert len(back) == 2 and set(back[0]) == {"ids", "rows", "emb"}
    assert back[0]["ids"].tolist() == ["a", "bé"] and back[0]["emb"].dtype == np.float32
    assert back[1]["emb"].shape == (0, 0)
    with pytest.raises(ValueError):  # an object array would need pickle: refused on load
        buf = io.BytesIO()
        np.savez(buf, batches=np.array(1), **{"0.x": np.array([{"a": 1}], dtype=object)})
        decode_features(buf.getvalue())


def test_claims_are_exclusive_and_stale_shards_are_taken_over(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        task = ProcessorTask(project_id="p", name="t", template_id="sys_data_selection", template={})
        s.add(task)
        s.flush()
        version = TaskVersion(task_id=task.id, version_name="V0001", template={}, status=1)
        s.add(version)
        s.flush()
        vid = version.id
        repo = ShardRepository(s)
        for i in range(3):
            repo.add(vid, 0, i, ShardSpec(i * 10, 10, f"line{i}\n", f"obs://b/{i}.npz"))
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            with session_scope(sessions) as s:
                row = ShardRepository(s).claim(vid, 0, name, stale_before_ms=now_ms() - 60_000)
                if row is None:
                    return
                with lock:
                    claimed.append(row.shard_index)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(claimed) == [0, 1, 2]  # each shard claimed exactly once

    with session_scope(sessions) as s:
        repo = ShardRepository(s)
        owner0 = s.get(VersionShard, (vid, 0, 0)).owner
        assert repo.heartbeat(vid, 0, 0, owner0) and not repo.heartbeat(vid, 0, 0, "someone-else")
        assert repo.claim(vid, 0, "late", stale_before_ms=now_ms() - 60_000) is None
        # shard 0's owner stopped heartbeating a minute ago: it can be claimed again
        s.get(VersionShard, (vid, 0, 0)).heartbeat_at = now_ms() - 61_000
    with session_scope(sessions) as s:
        repo = ShardRepository(s)
        row = repo.claim(vid, 0, "rescuer", stale_before_ms=now_ms() - 60_000)
        assert row is not None and row.shard_index == 0 and row.attempts == 2
        assert not repo.complete(vid, 0, 0, owner0)  # the old owner's late result is ignored
        assert repo.complete(vid, 0, 0, "rescuer")
        states = {p.shard_index: p.state for p in repo.plan(vid, 0)}
        assert states == {0: DONE, 1: RUNNING, 2: RUNNING}
        repo.finish_pass(vid, 0)
        assert repo.pass_finished(vid, 0)
        assert PENDING not in states.values()
    engine.dispose()
