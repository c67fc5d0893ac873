"""Repositories: every query and state change of the metadata DB, one class per aggregate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, asc, delete, desc, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from storage.db.ids import now_ms
from storage.db.models import Dataset, DatasetVersion, ProcessorTask, SampleResult, TaskVersion
from storage.errors import ConflictError, NotFoundError

INIT, RUNNING, COMPLETED, FAILED, STOPPED = 0, 1, 2, 3, 4
TERMINAL = (COMPLETED, FAILED, STOPPED)


@dataclass(frozen=True)
class Claim:
    """Outcome of a claim: ``claimed`` (run it), ``busy`` (another worker runs it), ``done``, ``missing``."""

    state: Literal["claimed", "busy", "done", "missing"]
    deliveries: int


class DatasetRepository:
    """Datasets and their versions; every dataset read is scoped to a project."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, dataset: Dataset) -> Dataset:
        self.session.add(dataset)
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise ConflictError(f"dataset name {dataset.name!r} already exists") from exc
        return dataset

    def get(self, project_id: str, dataset_id: str, *, for_update: bool = False) -> Dataset:
        """The dataset, if it belongs to ``project_id``. ``for_update`` takes its row's write lock
        first, so that publishes and deletes of one dataset's versions run one at a time."""
        where = (Dataset.id == dataset_id, Dataset.project_id == project_id)
        query = select(Dataset).where(*where)
        if for_update:
            # A no-op UPDATE rather than SELECT … FOR UPDATE, which SQLite ignores: as the first
            # write it makes a concurrent writer wait (row lock / database lock), and the row is
            # read afresh after it.
            self.session.execute(
                update(Dataset)
                .where(*where)
                .values(update_time=Dataset.update_time)
                .execution_options(synchronize_session=False)
            )
            query = query.execution_options(populate_existing=True)
        row = self.session.scalar(query)
        if row is None:
            raise NotFoundError(f"dataset {dataset_id} does not exist")
        return row

    def list(
        self,
        project_id: str,
        offset: int = 0,
        limit: int = 10,
        *,
        sort_by: str = "create_time",
        order: str = "desc",
        dataset_type: int | None = None,
        search: str | None = None,
        contain_versions: bool = False,
    ) -> tuple[int, Sequence[Dataset]]:
        """(total matching, one page); ``search`` is a case-insensitive substring of the name."""
        conds: list[Any] = [Dataset.project_id == project_id]
        if dataset_type is not None:
            conds.append(Dataset.dataset_type == dataset_type)
        if search:
            # LIKE wildcards in the search text match literally.
            pattern = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conds.append(func.lower(Dataset.name).like(f"%{pattern}%", escape="\\"))
        if contain_versions:
            conds.append(exists().where(DatasetVersion.dataset_id == Dataset.id))
        total = self.session.scalar(select(func.count()).select_from(Dataset).where(*conds)) or 0
        direction = asc if order == "asc" else desc
        column = Dataset.name if sort_by == "dataset_name" else Dataset.create_time
        rows = self.session.scalars(
            select(Dataset)
            .where(*conds)
            .order_by(direction(column), direction(Dataset.id))
            .offset(offset)
            .limit(limit)
        ).all()
        return total, rows

    def delete(self, dataset: Dataset) -> None:
        """Remove the dataset and its version records (the stored manifests are not touched)."""
        self.session.execute(delete(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id))
        self.session.delete(dataset)
        self.session.flush()

    def add_version(self, dataset: Dataset, version: DatasetVersion, make_current: bool = True) -> None:
        """Insert ``version`` (name unique per dataset, else ``ConflictError``) after the newest one."""
        version.dataset_id = dataset.id
        last_seq = self.session.scalar(
            select(func.max(DatasetVersion.seq)).where(DatasetVersion.dataset_id == dataset.id)
        )
        version.seq = (last_seq or 0) + 1
        if self.version_name_exists(dataset.id, version.name):
            raise ConflictError(f"dataset version {version.name!r} already exists")
        self.session.add(version)
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise ConflictError(f"dataset version {version.name!r} already exists") from exc
        if make_current:
            dataset.current_version_id = version.id
        dataset.next_version_num = max(dataset.next_version_num, _version_number(version.name) + 1)
        self.session.flush()

    def get_version(self, dataset_id: str, version_id: str) -> DatasetVersion:
        row = self.session.scalar(
            select(DatasetVersion).where(
                DatasetVersion.id == version_id, DatasetVersion.dataset_id == dataset_id
            )
        )
        if row is None:
            raise NotFoundError(f"dataset version {version_id} does not exist")
        return row

    def version_name_exists(self, dataset_id: str, name: str) -> bool:
        return (
            self.session.scalar(
                select(DatasetVersion.id).where(
                    DatasetVersion.dataset_id == dataset_id, DatasetVersion.name == name
                )
            )
            is not None
        )

    def versions(self, dataset_id: str, status: int | None = None) -> Sequence[DatasetVersion]:
        """The dataset's versions, newest first (optionally only those in ``status``)."""
        conds: list[Any] = [DatasetVersion.dataset_id == dataset_id]
        if status is not None:
            conds.append(DatasetVersion.status == status)
        return self.session.scalars(
            select(DatasetVersion)
            .where(*conds)
            .order_by(desc(DatasetVersion.create_time), desc(DatasetVersion.seq))
        ).all()

    def delete_version(self, dataset: Dataset, version: DatasetVersion) -> DatasetVersion | None:
        """Remove a version record; if it was current, the newest remaining one becomes current
        (returned). The stored manifest is not touched."""
        self.session.delete(version)
        self.session.flush()
        if dataset.current_version_id != version.id:
            return None
        remaining = self.versions(dataset.id)
        dataset.current_version_id = remaining[0].id if remaining else None
        self.session.flush()
        return remaining[0] if remaining else None

    def version_counts(self, dataset_ids: Iterable[str]) -> dict[str, int]:
        """Number of versions per dataset id (ids without versions are absent)."""
        ids = list(dataset_ids)
        if not ids:
            return {}
        rows = self.session.execute(
            select(DatasetVersion.dataset_id, func.count())
            .where(DatasetVersion.dataset_id.in_(ids))
            .group_by(DatasetVersion.dataset_id)
        ).all()
        return {dataset_id: count for dataset_id, count in rows}

    def versions_by_id(self, version_ids: Iterable[str]) -> dict[str, DatasetVersion]:
        ids = list(version_ids)
        if not ids:
            return {}
        rows = self.session.scalars(select(DatasetVersion).where(DatasetVersion.id.in_(ids))).all()
        return {row.id: row for row in rows}

    def task_statuses(self, task_ids: Iterable[str]) -> dict[str, int]:
        """Status of the processor tasks linked from versions (deleted tasks are absent)."""
        ids = list(task_ids)
        if not ids:
            return {}
        rows = self.session.execute(
            select(ProcessorTask.id, ProcessorTask.status).where(ProcessorTask.id.in_(ids))
        ).all()
        return {task_id: status for task_id, status in rows}


def _version_number(name: str) -> int:
    """The number in a default-style name (``V004`` → 4, ``V0011`` → 11); 0 for custom names."""
    digits = name[1:]
    is_default_style = name.startswith("V") and digits.isascii() and digits.isdigit() and len(digits) <= 9
    return int(digits) if is_default_style else 0


@dataclass(frozen=True)
class TaskFilter:
    task_type: str | None = None
    status: int | None = None
    task_name: str | None = None
    source_type: str | None = None
    source: str | None = None
    version_ids: tuple[str, ...] = ()
    current_only: bool = False


_TASK_SORT = {
    "create_time": ProcessorTask.create_time,
    "name": ProcessorTask.name,
    "duration_seconds": ProcessorTask.duration_seconds,
}


class TaskRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, task: ProcessorTask) -> ProcessorTask:
        if self.session.scalar(
            select(ProcessorTask.id).where(
                ProcessorTask.project_id == task.project_id, ProcessorTask.name == task.name
            )
        ):
            raise ConflictError(f"processor task {task.name!r} already exists")
        self.session.add(task)
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise ConflictError(f"processor task {task.name!r} already exists") from exc
        return task

    def get(self, project_id: str, task_id: str) -> ProcessorTask:
        row = self.session.scalar(
            select(ProcessorTask).where(ProcessorTask.id == task_id, ProcessorTask.project_id == project_id)
        )
        if row is None:
            raise NotFoundError(f"processor task {task_id} does not exist")
        return row

    def list(
        self,
        project_id: str,
        flt: TaskFilter,
        *,
        offset: int = 0,
        limit: int = 10,
        sort_by: str = "create_time",
        order: str = "desc",
    ) -> tuple[int, Sequence[ProcessorTask]]:
        conds: list[Any] = [ProcessorTask.project_id == project_id]
        if flt.task_type:
            conds.append(ProcessorTask.template_id == flt.task_type)
        if flt.status is not None:
            conds.append(ProcessorTask.status == flt.status)
        if flt.task_name:
            pattern = flt.task_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conds.append(ProcessorTask.name.like(f"%{pattern}%", escape="\\"))
        if flt.version_ids:
            conds.append(ProcessorTask.version_id.in_(flt.version_ids))
        if flt.source_type:
            conds.append(ProcessorTask.source_type == flt.source_type)
        if flt.source:
            conds.append(ProcessorTask.source == flt.source)
        if flt.current_only:
            newer = aliased(ProcessorTask)
            conds.append(
                ~exists().where(
                    newer.project_id == ProcessorTask.project_id,
                    newer.template_id == ProcessorTask.template_id,
                    newer.version_id == ProcessorTask.version_id,
                    newer.create_time > ProcessorTask.create_time,
                )
            )
        total = self.session.scalar(select(func.count()).select_from(ProcessorTask).where(*conds)) or 0
        column = _TASK_SORT.get(sort_by, ProcessorTask.create_time)
        direction = asc if order == "asc" else desc
        rows = self.session.scalars(
            select(ProcessorTask)
            .where(*conds)
            .order_by(direction(column), direction(ProcessorTask.id))
            .offset(offset)
            .limit(limit)
        ).all()
        return total, rows

    def add_version(self, task: ProcessorTask, version: TaskVersion) -> TaskVersion:
        version.task_id = task.id
        self.session.add(version)
        self.session.flush()
        return version

    def next_version_name(self, task_id: str) -> str:
        """``V0001``, ``V0002``…: one past the highest number used, so deleted names are not reused."""
        names = self.session.scalars(select(TaskVersion.version_name).where(TaskVersion.task_id == task_id))
        return f"V{max((_version_number(n) for n in names), default=0) + 1:04d}"

    def versions(self, task_id: str, order: str = "desc") -> Sequence[TaskVersion]:
        direction = desc if order == "desc" else asc
        return self.session.scalars(
            select(TaskVersion)
            .where(TaskVersion.task_id == task_id)
            .order_by(direction(TaskVersion.create_time), direction(TaskVersion.version_name))
        ).all()

    def version_count(self, task_id: str) -> int:
        return (
            self.session.scalar(
                select(func.count()).select_from(TaskVersion).where(TaskVersion.task_id == task_id)
            )
            or 0
        )

    def get_version(self, version_id: str) -> TaskVersion:
        row = self.session.get(TaskVersion, version_id)
        if row is None:
            raise NotFoundError(f"task version {version_id} does not exist")
        return row

    # --- worker-side state changes -------------------------------------------------------------

    def claim(self, version_id: str, stale_before_ms: int | None = None) -> Claim:
        """Compare-and-set to RUNNING, counting the delivery.

        A version is claimable when it is INIT (and not asked to stop), or RUNNING with a heartbeat
        older than ``stale_before_ms`` (its worker died; this delivery takes over).
        """
        now = now_ms()
        claimable = and_(TaskVersion.status == INIT, TaskVersion.stop_requested.is_(False))
        if stale_before_ms is not None:
            claimable = or_(
                claimable, and_(TaskVersion.status == RUNNING, TaskVersion.update_time < stale_before_ms)
            )
        result = self.session.execute(
            update(TaskVersion)
            .where(TaskVersion.id == version_id, claimable)
            .values(
                status=RUNNING,
                started_at=func.coalesce(TaskVersion.started_at, now),
                update_time=now,
                deliveries=TaskVersion.deliveries + 1,
            )
            .execution_options(synchronize_session=False)
        )
        row = self.session.execute(
            select(TaskVersion.task_id, TaskVersion.status, TaskVersion.deliveries).where(
                TaskVersion.id == version_id
            )
        ).first()
        if row is None:
            return Claim("missing", 0)
        if result.rowcount == 1:
            self._mirror(row.task_id, status=RUNNING, only_for=version_id)
            return Claim("claimed", row.deliveries)
        return Claim("busy" if row.status == RUNNING else "done", row.deliveries)

    def heartbeat(self, version_id: str) -> None:
        """Mark a running version alive (takeover happens only after heartbeats stop)."""
        self.session.execute(
            update(TaskVersion)
            .where(TaskVersion.id == version_id, TaskVersion.status == RUNNING)
            .values(update_time=now_ms())
        )

    def set_progress(self, version_id: str, done: int) -> None:
        self.session.execute(
            update(TaskVersion)
            .where(TaskVersion.id == version_id)
            .values(progress=done, update_time=now_ms())
        )

    def stop_requested(self, version_id: str) -> bool:
        """True when a stop was asked for, or the version was deleted under the worker."""
        flag = self.session.scalar(select(TaskVersion.stop_requested).where(TaskVersion.id == version_id))
        return flag is None or bool(flag)

    def still_running(self, version_id: str) -> bool:
        """RUNNING and not asked to stop (False once it failed, stopped, finished or was deleted)."""
        row = self.session.execute(
            select(TaskVersion.status, TaskVersion.stop_requested).where(TaskVersion.id == version_id)
        ).first()
        return row is not None and row.status == RUNNING and not row.stop_requested

    def request_stop(self, version_id: str) -> int:
        """Ask a version to stop: a queued one ends STOPPED now, a running one at its next batch."""
        now = now_ms()
        self.session.execute(
            update(TaskVersion)
            .where(TaskVersion.id == version_id, TaskVersion.status.in_((INIT, RUNNING)))
            .values(stop_requested=True, update_time=now)
        )
        version = self.get_version(version_id)
        if version.status == INIT:
            self.finish(version_id, STOPPED)
            self.session.refresh(version)
        return version.status

    def running_count(self, project_id: str) -> int:
        """Versions queued or running in a project (the concurrency cap, ModelArts.4409)."""
        return (
            self.session.scalar(
                select(func.count())
                .select_from(TaskVersion)
                .join(ProcessorTask, ProcessorTask.id == TaskVersion.task_id)
                .where(ProcessorTask.project_id == project_id, TaskVersion.status.in_((INIT, RUNNING)))
            )
            or 0
        )

    def delete_version(self, version: TaskVersion) -> None:
        """Remove a version and its result records; the task then mirrors its newest remaining version."""
        task_id = version.task_id
        self.session.execute(delete(SampleResult).where(SampleResult.task_version_id == version.id))
        self.session.delete(version)
        self.session.flush()
        newest = self.session.scalar(
            select(TaskVersion).where(TaskVersion.task_id == task_id).order_by(desc(TaskVersion.create_time))
        )
        if newest is None:
            self._mirror(task_id, status=INIT, error_msg=None, duration_seconds=0)
        else:
            self._mirror(
                task_id,
                status=newest.status,
                error_msg=newest.error_msg,
                duration_seconds=newest.duration_seconds,
            )

    def delete_task(self, task: ProcessorTask) -> None:
        for version in list(self.versions(task.id)):
            self.session.execute(delete(SampleResult).where(SampleResult.task_version_id == version.id))
            self.session.delete(version)
        self.session.delete(task)
        self.session.flush()

    def finish(
        self,
        version_id: str,
        status: int,
        *,
        error_msg: str | None = None,
        counters: dict[str, int] | None = None,
        result: dict[str, Any] | None = None,
        output_path: str | None = None,
    ) -> bool:
        """Terminal state + counters in one statement, only from RUNNING (so a finish happens once)."""
        assert status in TERMINAL
        version = self.session.get(TaskVersion, version_id)
        if version is None:
            return False  # deleted while it ran
        now = now_ms()
        started = version.started_at or now
        values: dict[str, Any] = {
            "status": status,
            "error_msg": error_msg,
            "finished_at": now,
            "update_time": now,
            "duration_seconds": max(0, round((now - started) / 1000)),
        }
        if counters:
            values.update(counters)
        if output_path is not None:
            values["output_path"] = output_path
        res = self.session.execute(
            update(TaskVersion)
            .where(TaskVersion.id == version_id, TaskVersion.status.in_((INIT, RUNNING)))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:
            return False
        self._mirror(
            version.task_id,
            only_for=version_id,
            status=status,
            error_msg=error_msg,
            result=result,
            duration_seconds=values["duration_seconds"],
        )
        return True

    def _mirror(self, task_id: str, only_for: str | None = None, **values: Any) -> None:
        """A task mirrors its newest version's state (``only_for``: only if that version is the newest)."""
        if only_for is not None:
            newest = self.session.scalar(
                select(TaskVersion.id)
                .where(TaskVersion.task_id == task_id)
                .order_by(desc(TaskVersion.create_time), desc(TaskVersion.version_name))
                .limit(1)
            )
            if newest != only_for:
                return
        values["update_time"] = now_ms()
        self.session.execute(update(ProcessorTask).where(ProcessorTask.id == task_id).values(**values))

    # --- results -------------------------------------------------------------------------------

    def replace_results(self, version_id: str, results: Iterable[SampleResult]) -> None:
        """Write a version's per-sample records; a retried run replaces the earlier attempt's."""
        self.session.execute(delete(SampleResult).where(SampleResult.task_version_id == version_id))
        batch: list[SampleResult] = []
        for res in results:
            res.task_version_id = version_id
            batch.append(res)
            if len(batch) >= 1000:
                self.session.add_all(batch)
                self.session.flush()
                batch = []
        self.session.add_all(batch)
        self.session.flush()

    def results(
        self, version_id: str, result_property: int = -1, offset: int = 0, limit: int = 10
    ) -> tuple[int, Sequence[SampleResult]]:
        conds: list[Any] = [SampleResult.task_version_id == version_id]
        if result_property != -1:
            conds.append(SampleResult.result_property == result_property)
        total = self.session.scalar(select(func.count()).select_from(SampleResult).where(*conds)) or 0
        rows = self.session.scalars(
            select(SampleResult).where(*conds).order_by(SampleResult.id).offset(offset).limit(limit)
        ).all()
        return total, rows
