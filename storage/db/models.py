"""SQLAlchemy 2 models: datasets, dataset versions, processor tasks, task versions, sample results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.db.ids import new_id, now_ms


class Base(DeclarativeBase):
    """Declarative base of every metadata table."""


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_dataset_project_name"),)

    id: Mapped[str] = mapped_column(String(19), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(256), default="")
    dataset_type: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer, default=1)
    data_path: Mapped[str] = mapped_column(Text)
    work_path: Mapped[str] = mapped_column(Text)
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    current_version_id: Mapped[str | None] = mapped_column(String(19), nullable=True)
    next_version_num: Mapped[int] = mapped_column(Integer, default=1)
    workspace_id: Mapped[str] = mapped_column(String(64), default="0")
    create_time: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    update_time: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)

    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", passive_deletes=True
    )


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_dataset_version_name"),)

    id: Mapped[str] = mapped_column(String(19), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[int] = mapped_column(Integer, default=1)
    manifest_uri: Mapped[str] = mapped_column(Text)
    previous_version_id: Mapped[str | None] = mapped_column(String(19), nullable=True)
    total_sample_count: Mapped[int] = mapped_column(Integer, default=0)
    annotated_sample_count: Mapped[int] = mapped_column(Integer, default=0)
    add_sample_count: Mapped[int] = mapped_column(Integer, default=0)
    modified_sample_count: Mapped[int] = mapped_column(Integer, default=0)
    deleted_sample_count: Mapped[int] = mapped_column(Integer, default=0)
    label_stats: Mapped[list[Any]] = mapped_column(JSON, default=list)
    analysis_task_id: Mapped[str | None] = mapped_column(String(19), nullable=True)
    processor_task_id: Mapped[str | None] = mapped_column(String(19), nullable=True)
    create_time: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    update_time: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)
    # Creation order within the dataset: breaks create_time ties (two versions in one millisecond).
    seq: Mapped[int] = mapped_column(Integer, default=0)
    previous_total_sample_count: Mapped[int] = mapped_column(Integer, default=0)
    previous_annotated_sample_count: Mapped[int] = mapped_column(Integer, default=0)
    # The publish options, echoed by the version object (modelarts-datasets-api.md §4.1).
    train_evaluate_sample_ratio: Mapped[str] = mapped_column(String(16), default="1.00")
    remove_sample_usage: Mapped[bool] = mapped_column(default=True)
    clear_hard_property: Mapped[bool] = mapped_column(default=True)
    label_type: Mapped[str | None] = mapped_column(String(8), nullable=True)

    dataset: Mapped[Dataset] = relationship(back_populates="versions")


class ProcessorTask(Base):
    __tablename__ = "processor_tasks"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_task_project_name"),
        # The default listing (newest first) and ``is_current`` / ``query_current`` lookups.
        Index("ix_tasks_project_created", "project_id", "create_time"),
        Index("ix_tasks_current", "project_id", "template_id", "version_id", "create_time"),
    )

    id: Mapped[str] = mapped_column(String(19), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(256), default="")
    template_id: Mapped[str] = mapped_column(String(64), index=True)
    template: Mapped[dict[str, Any]] = mapped_column(JSON)
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    work_path: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The first input's type and source, as columns so that list filters run in SQL.
    source_type: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    version_id: Mapped[str | None] = mapped_column(String(19), nullable=True, index=True)
    workspace_id: Mapped[str] = mapped_column(String(64), default="0")
    status: Mapped[int] = mapped_column(Integer, default=0, index=True)
    error_msg: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    duration_seconds: Mapped[int] = mapped_column(Integer, default=0)
    create_time: Mapped[int] = mapped_column(BigInteger, default=now_ms, index=True)
    update_time: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)

    versions: Mapped[list[TaskVersion]] = relationship(
        back_populates="task", cascade="all, delete-orphan", passive_deletes=True
    )


class TaskVersion(Base):
    __tablename__ = "task_versions"
    __table_args__ = (UniqueConstraint("task_id", "version_name", name="uq_task_version_name"),)

    id: Mapped[str] = mapped_column(String(19), primary_key=True, default=new_id)
    task_id: Mapped[str] = mapped_column(ForeignKey("processor_tasks.id", ondelete="CASCADE"), index=True)
    version_name: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[int] = mapped_column(Integer, default=0, index=True)
    error_msg: Mapped[str | None] = mapped_column(Text, nullable=True)
    template: Mapped[dict[str, Any]] = mapped_column(JSON)
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    work_path: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    output_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    origin_sample_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    add_sample_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    modified_sample_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    unmodified_sample_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deleted_sample_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    stop_requested: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    duration_seconds: Mapped[int] = mapped_column(Integer, default=0)
    create_time: Mapped[int] = mapped_column(BigInteger, default=now_ms, index=True)
    update_time: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)

    task: Mapped[ProcessorTask] = relationship(back_populates="versions")


class VersionShard(Base):
    """One slice of a task version's input for a sharded pass, extracted by whichever worker claims it.

    ``manifest`` holds the slice's manifest lines, so a worker needs nothing else to read its samples;
    the features it extracts go to the object ``features_uri``. State: 0 pending, 1 running
    (``owner`` heartbeats), 2 done, 3 failed (``error``).
    """

    __tablename__ = "version_shards"

    task_version_id: Mapped[str] = mapped_column(
        ForeignKey("task_versions.id", ondelete="CASCADE"), primary_key=True
    )
    pass_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    shard_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[str] = mapped_column(Text)
    features_uri: Mapped[str] = mapped_column(Text)
    state: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SampleResult(Base):
    __tablename__ = "sample_results"
    __table_args__ = (
        UniqueConstraint("task_version_id", "sample_id", name="uq_sample_result"),
        Index("ix_sample_results_version_property", "task_version_id", "result_property"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    task_version_id: Mapped[str] = mapped_column(ForeignKey("task_versions.id", ondelete="CASCADE"))
    sample_id: Mapped[str] = mapped_column(String(32))
    origin_source: Mapped[str] = mapped_column(Text)
    new_source: Mapped[str | None] = mapped_column(Text, nullable=True)
    result_property: Mapped[int] = mapped_column(Integer, default=0)
    result_description: Mapped[list[Any]] = mapped_column(JSON, default=list)


class ApiKey(Base):
    """An ``X-Auth-Token`` key: only a hash of its secret is stored; scoped to project ids."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(19), primary_key=True, default=new_id)
    secret_hash: Mapped[str] = mapped_column(String(64))
    projects: Mapped[list[Any]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(256), default="")
    create_time: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    revoked_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
