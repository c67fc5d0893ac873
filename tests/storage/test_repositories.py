"""The repository layer against SQLite and PostgreSQL: same behaviour on both."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.db.engine import make_engine, make_session_factory, session_scope
from storage.db.migrate import alembic_config
from storage.db.models import Base, Dataset, DatasetVersion, ProcessorTask, SampleResult, TaskVersion
from storage.db.repositories import (
    COMPLETED,
    FAILED,
    RUNNING,
    Claim,
    DatasetRepository,
    TaskFilter,
    TaskRepository,
)
from storage.errors import ConflictError, NotFoundError


@pytest.fixture
def factory(db_url: str):
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def _task(project: str = "p1", name: str = "t1", template: str = "sys_data_analyse", **kw) -> ProcessorTask:
    return ProcessorTask(
        project_id=project,
        name=name,
        template_id=template,
        template={"id": template, "operator_params": []},
        inputs=[{"type": "DATASET", "source": "ds1"}],
        source_type="DATASET",
        source="ds1",
        **kw,
    )


def _task_with_version(factory, **kw) -> tuple[str, str]:
    with session_scope(factory) as s:
        repo = TaskRepository(s)
        task = repo.add(_task(**kw))
        version = repo.add_version(
            task, TaskVersion(version_name=repo.next_version_name(task.id), template=task.template)
        )
        return task.id, version.id


def test_migrations_match_models(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_migration_upgrade_is_idempotent(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "head")  # second run after the fixture's: no error, no change


def test_task_create_get_and_name_clash(factory) -> None:
    task_id, version_id = _task_with_version(factory)
    with session_scope(factory) as s:
        repo = TaskRepository(s)
        task = repo.get("p1", task_id)
        assert task.status == 0 and len(task.id) == 19
        assert repo.version_count(task_id) == 1
        assert repo.get_version(version_id).version_name == "V0001"
        with pytest.raises(NotFoundError):
            repo.get("other-project", task_id)
    with pytest.raises(ConflictError), session_scope(factory) as s:
        TaskRepository(s).add(_task())


def test_claim_is_compare_and_set(factory) -> None:
    task_id, version_id = _task_with_version(factory)
    with session_scope(factory) as s:
        assert TaskRepository(s).claim(version_id) == Claim("claimed", 1)
    with session_scope(factory) as s:
        assert TaskRepository(s).claim(version_id).state == "busy"  # a second delivery does nothing
        assert TaskRepository(s).get("p1", task_id).status == RUNNING
    with session_scope(factory) as s:
        assert TaskRepository(s).claim("nope").state == "missing"


def test_stale_running_version_is_taken_over(factory) -> None:
    _, version_id = _task_with_version(factory)
    with session_scope(factory) as s:
        TaskRepository(s).claim(version_id)
    with session_scope(factory) as s:
        version = TaskRepository(s).get_version(version_id)
        fresh_cutoff = version.update_time  # heartbeat not older than this: not stale
        assert TaskRepository(s).claim(version_id, stale_before_ms=fresh_cutoff).state == "busy"
    with session_scope(factory) as s:
        taken = TaskRepository(s).claim(version_id, stale_before_ms=fresh_cutoff + 10_000)
        assert taken == Claim("claimed", 2)


def test_finished_version_is_never_claimed_again(factory) -> None:
    _, version_id = _task_with_version(factory)
    with session_scope(factory) as s:
        TaskRepository(s).claim(version_id)
        TaskRepository(s).finish(version_id, COMPLETED)
    with session_scope(factory) as s:
        assert TaskRepository(s).claim(version_id, stale_before_ms=10**15).state == "done"


def test_concurrent_claims_only_one_wins(factory) -> None:
    _, version_id = _task_with_version(factory)
    wins: list[bool] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        with session_scope(factory) as s:
            wins.append(TaskRepository(s).claim(version_id).state == "claimed")

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False, False, False, True]


def test_finish_sets_terminal_state_once_and_mirrors_task(factory) -> None:
    task_id, version_id = _task_with_version(factory)
    with session_scope(factory) as s:
        TaskRepository(s).claim(version_id)
    counters = {
        "origin_sample_count": 3,
        "unmodified_sample_count": 3,
        "modified_sample_count": 0,
        "deleted_sample_count": 0,
        "add_sample_count": 0,
    }
    with session_scope(factory) as s:
        ok = TaskRepository(s).finish(version_id, COMPLETED, counters=counters, result={"x": 1})
        assert ok
    with session_scope(factory) as s:
        assert TaskRepository(s).finish(version_id, FAILED, error_msg="late") is False
        repo = TaskRepository(s)
        task = repo.get("p1", task_id)
        version = repo.get_version(version_id)
        assert (task.status, task.result, task.error_msg) == (COMPLETED, {"x": 1}, None)
        assert version.status == COMPLETED and version.origin_sample_count == 3
        assert version.finished_at is not None and version.finished_at >= version.started_at


def test_list_filters_sorting_paging(factory) -> None:
    with session_scope(factory) as s:
        repo = TaskRepository(s)
        for i, name in enumerate(["alpha", "beta", "gamma", "alphabet"]):
            repo.add(
                _task(
                    name=name,
                    template="sys_data_analyse" if i % 2 == 0 else "sys_data_cleaning",
                    create_time=1000 + i,
                )
            )
        repo.add(_task(project="p2", name="alpha"))
    with session_scope(factory) as s:
        repo = TaskRepository(s)
        total, rows = repo.list("p1", TaskFilter(), limit=2)
        assert total == 4 and [r.name for r in rows] == ["alphabet", "gamma"]
        total, rows = repo.list("p1", TaskFilter(), offset=2, limit=2)
        assert [r.name for r in rows] == ["beta", "alpha"]
        total, rows = repo.list("p1", TaskFilter(task_name="alph"), sort_by="name", order="asc")
        assert total == 2 and [r.name for r in rows] == ["alpha", "alphabet"]
        total, _ = repo.list("p1", TaskFilter(task_type="sys_data_cleaning"))
        assert total == 2
        total, _ = repo.list("p1", TaskFilter(task_name="%"))  # LIKE wildcards are literal
        assert total == 0
        total, _ = repo.list("p1", TaskFilter(source_type="OBS"))
        assert total == 0
        total, _ = repo.list("p1", TaskFilter(source_type="DATASET", source="ds1"))
        assert total == 4


def test_results_replace_and_filter(factory) -> None:
    _, version_id = _task_with_version(factory)

    def records(n: int) -> list[SampleResult]:
        return [
            SampleResult(
                sample_id=f"{i:032x}",
                origin_source=f"obs://b/{i}.jpg",
                result_property=i % 3,
                result_description=[[f"r{i}"]],
            )
            for i in range(n)
        ]

    with session_scope(factory) as s:
        TaskRepository(s).replace_results(version_id, records(5))
    with session_scope(factory) as s:
        TaskRepository(s).replace_results(version_id, records(7))  # a retry replaces, never duplicates
    with session_scope(factory) as s:
        repo = TaskRepository(s)
        total, rows = repo.results(version_id, limit=100)
        assert total == 7
        total, rows = repo.results(version_id, result_property=2, limit=100)
        assert total == 2 and {r.sample_id for r in rows} == {f"{2:032x}", f"{5:032x}"}
        assert rows[0].result_description == [["r2"]]


def test_dataset_versions_and_conflicts(factory) -> None:
    with session_scope(factory) as s:
        repo = DatasetRepository(s)
        ds = repo.add(Dataset(project_id="p1", name="flowers", data_path="/b/in/", work_path="/b/out/"))
        repo.add_version(ds, DatasetVersion(name="V001", manifest_uri="obs://b/out/V001.manifest"))
        dataset_id = ds.id
    with session_scope(factory) as s:
        repo = DatasetRepository(s)
        ds = repo.get("p1", dataset_id)
        assert ds.current_version_id is not None and ds.next_version_num == 2
        assert repo.version_name_exists(dataset_id, "V001")
        with pytest.raises(NotFoundError):
            repo.get("p2", dataset_id)
    with pytest.raises(ConflictError), session_scope(factory) as s:
        repo = DatasetRepository(s)
        repo.add_version(repo.get("p1", dataset_id), DatasetVersion(name="V001", manifest_uri="x"))
    with pytest.raises(ConflictError), session_scope(factory) as s:
        DatasetRepository(s).add(Dataset(project_id="p1", name="flowers", data_path="/b/", work_path="/b/o/"))
