"""Dataset use cases behind the router: look-ups scoped to a project, storage errors mapped to
ModelArts codes, and the Dataset / DatasetVersion / sample objects of modelarts-datasets-api.md §3, §5."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from api.errors import ApiError, invalid
from api.schemas.datasets import CreateDatasetRequest, CreateVersionRequest
from api.services.paths import checked_folder
from storage.datasets import (
    EmptyImportError,
    LastVersionError,
    NoCurrentVersionError,
    PublishOptions,
    SampleFilter,
    SplitError,
    dataset_paths,
    delete_version,
    page_samples,
    parse_ratio,
    publish_from_current,
    register_dataset,
)
from storage.db.models import Dataset, DatasetVersion
from storage.db.repositories import DatasetRepository
from storage.errors import (
    ConflictError,
    InvalidKeyError,
    NotFoundError,
    ObjectNotFoundError,
    StorageError,
)
from storage.manifest import IMAGE_CLASSIFICATION, OBJECT_DETECTION, ManifestSample, sample_id
from storage.objectstore.base import ObjectStore
from storage.uris import parse_uri, to_api_path
from storage.voc import MAX_VOC_BYTES, VocBox, parse_voc

MAX_ID_LENGTH = 64
TAGS = {0: ["Image", "Image classification"], 1: ["Image", "Object detection"]}
LABEL_TYPES = {IMAGE_CLASSIFICATION: 0, OBJECT_DETECTION: 1, "modelarts/image_segmentation": 3}
# Processor-task status (0-4) → analysis_status (0 initialized, 1 running, 2 completed, 3 failed).
ANALYSIS_STATUS = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3}
LABELLED, UNLABELLED = "__ALL__", "__NONE__"


def _is_id(value: str) -> bool:
    """Resource ids are ``[A-Za-z0-9]``; anything else (NUL, ``../``, 2,000 characters) cannot exist."""
    return 0 < len(value) <= MAX_ID_LENGTH and value.isascii() and value.isalnum()


def get_dataset(session: Session, project_id: str, dataset_id: str, *, for_update: bool = False) -> Dataset:
    """The project's dataset, or 400 ModelArts.4352 (also for another project's id)."""
    if _is_id(dataset_id):
        try:
            return DatasetRepository(session).get(project_id, dataset_id, for_update=for_update)
        except NotFoundError:
            pass
    raise ApiError("ModelArts.4352", f"Dataset {dataset_id[:MAX_ID_LENGTH]!r} does not exist")


def get_version(session: Session, dataset: Dataset, version_id: str) -> DatasetVersion:
    """A version of ``dataset``, or 400 ModelArts.4353."""
    if _is_id(version_id):
        try:
            return DatasetRepository(session).get_version(dataset.id, version_id)
        except NotFoundError:
            pass
    raise ApiError("ModelArts.4353", f"Dataset version {version_id[:MAX_ID_LENGTH]!r} does not exist")


def create_dataset(
    session: Session, store: ObjectStore, project_id: str, body: CreateDatasetRequest
) -> Dataset:
    """CreateDataset: import the data source and publish ``V001`` (synchronously)."""
    data_path = checked_folder(body.data_sources[0].data_path, "data_path")
    work_path = checked_folder(body.work_path, "work_path")
    if not work_path.endswith("/"):
        work_path += "/"
    data_dir = data_path if data_path.endswith("/") else data_path.rsplit("/", 1)[0] + "/"
    if work_path.startswith(data_dir) or data_dir.startswith(work_path):
        raise ApiError("ModelArts.4364", "work_path must not equal, contain or lie inside the input path")
    try:
        dataset, _ = register_dataset(
            session,
            store,
            project_id=project_id,
            name=body.dataset_name,
            data_path=data_path,
            work_path=work_path,
            dataset_type=body.dataset_type,
            description=body.description,
            labels=[label.model_dump(exclude_none=True) for label in body.labels],
            import_annotations=body.import_annotations,
            workspace_id=body.workspace_id,
        )
    except ConflictError:
        raise ApiError("ModelArts.4351", f"Dataset name {body.dataset_name} already exists") from None
    except EmptyImportError as exc:
        raise ApiError("ModelArts.4340", str(exc)) from None
    except ObjectNotFoundError as exc:
        raise ApiError("ModelArts.4312", f"path does not exist: {exc}") from None
    except InvalidKeyError as exc:
        raise ApiError("ModelArts.4313", f"invalid path: {exc}") from None
    return dataset


def create_version(
    session: Session, store: ObjectStore, dataset: Dataset, body: CreateVersionRequest
) -> DatasetVersion:
    """CreateDatasetVersion: publish the current version's samples as a new current version."""
    options = PublishOptions(
        train_evaluate_sample_ratio=body.train_evaluate_sample_ratio,
        remove_sample_usage=body.remove_sample_usage,
        clear_hard_property=body.clear_hard_property,
    )
    try:
        return publish_from_current(
            session,
            store,
            dataset,
            version_name=body.version_name,
            description=body.description,
            options=options,
        )
    except ConflictError:
        raise ApiError("ModelArts.4371", f"Dataset version {body.version_name} already exists") from None
    except SplitError as exc:
        raise ApiError("ModelArts.4342", str(exc)) from None
    except NoCurrentVersionError as exc:
        raise ApiError("ModelArts.4825", str(exc)) from None
    except ObjectNotFoundError as exc:
        raise ApiError("ModelArts.4312", f"manifest of the current version is missing: {exc}") from None
    except StorageError as exc:
        raise ApiError("ModelArts.4710", f"publishing failed: {exc}") from None


def remove_version(session: Session, dataset: Dataset, version: DatasetVersion) -> None:
    """DeleteDatasetVersion (the newest remaining version becomes current; the last one stays)."""
    try:
        delete_version(session, dataset, version)
    except LastVersionError as exc:
        raise ApiError("ModelArts.4828", f"{exc}; delete the dataset instead") from None


# --- rendering ---------------------------------------------------------------------------------


def _data_path(version: DatasetVersion) -> str:
    """``annotation/{V}/data/`` beside the version manifest."""
    return to_api_path(parse_uri(version.manifest_uri).parent.join("data/"))


def render_version(
    dataset: Dataset, version: DatasetVersion, task_statuses: dict[str, int]
) -> dict[str, Any]:
    """DatasetVersion (§3.2); ``task_statuses`` holds the linked processor tasks' statuses."""
    label_meta = {label.get("name"): label for label in dataset.labels if isinstance(label, dict)}
    stats = []
    for stat in version.label_stats:
        meta = label_meta.get(stat.get("name"), {})
        stats.append(
            {
                "name": stat.get("name"),
                "type": meta.get("type", dataset.dataset_type),
                "property": meta.get("property", {}),
                "count": stat.get("count", 0),
                "sample_count": stat.get("sample_count", 0),
            }
        )
    out: dict[str, Any] = {
        "version_id": version.id,
        "version_name": version.name,
        "version_format": "Default",
        "description": version.description,
        "status": version.status,
        "is_current": version.id == dataset.current_version_id,
        "create_time": version.create_time,
        "update_time": version.update_time,
        "total_sample_count": version.total_sample_count,
        "annotated_sample_count": version.annotated_sample_count,
        "total_sub_sample_count": 0,
        "annotated_sub_sample_count": 0,
        "previous_total_sample_count": version.previous_total_sample_count,
        "previous_annotated_sample_count": version.previous_annotated_sample_count,
        "add_sample_count": version.add_sample_count,
        "modified_sample_count": version.modified_sample_count,
        "deleted_sample_count": version.deleted_sample_count,
        "deletion_stats": {},
        "manifest_path": to_api_path(parse_uri(version.manifest_uri)),
        "data_path": _data_path(version),
        "train_evaluate_sample_ratio": version.train_evaluate_sample_ratio,
        "remove_sample_usage": version.remove_sample_usage,
        "clear_hard_property": version.clear_hard_property,
        "export_images": False,
        "extract_serial_number": False,
        "label_stats": stats,
        "task_type": dataset.dataset_type,
        "tags": TAGS.get(dataset.dataset_type, ["Image"]),
    }
    if version.previous_version_id:
        out["previous_version_id"] = version.previous_version_id
    if version.label_type:
        out["label_type"] = version.label_type
    if version.analysis_task_id:
        out["analysis_task_id"] = version.analysis_task_id
        if version.analysis_task_id in task_statuses:
            out["analysis_status"] = ANALYSIS_STATUS.get(task_statuses[version.analysis_task_id], 3)
        out["analysis_cache_path"] = to_api_path(dataset_paths(dataset).evaluation(version.name))
    if version.processor_task_id:
        out["processor_task_id"] = version.processor_task_id
        if version.processor_task_id in task_statuses:
            out["processor_task_status"] = task_statuses[version.processor_task_id]
    return out


def _linked_task_ids(versions: Iterable[DatasetVersion]) -> set[str]:
    return {t for v in versions for t in (v.analysis_task_id, v.processor_task_id) if t}


def render_versions(
    session: Session, dataset: Dataset, versions: Sequence[DatasetVersion]
) -> list[dict[str, Any]]:
    """Several versions of one dataset, with one query for all linked task statuses."""
    statuses = DatasetRepository(session).task_statuses(_linked_task_ids(versions))
    return [render_version(dataset, v, statuses) for v in versions]


def render_datasets(
    session: Session,
    datasets: Sequence[Dataset],
    *,
    with_labels: bool = True,
    check_running_task: bool = False,
) -> list[dict[str, Any]]:
    """Dataset objects (§3.1), each with ``versions`` = [its current version]; a fixed number of
    queries whatever the page size."""
    repo = DatasetRepository(session)
    counts = repo.version_counts(d.id for d in datasets)
    current = repo.versions_by_id(d.current_version_id for d in datasets if d.current_version_id)
    statuses = repo.task_statuses(_linked_task_ids(current.values()))
    out = []
    for dataset in datasets:
        version = current.get(dataset.current_version_id or "")
        inner = to_api_path(dataset_paths(dataset).inner)
        item: dict[str, Any] = {
            "dataset_id": dataset.id,
            "dataset_name": dataset.name,
            "dataset_type": dataset.dataset_type,
            "data_format": "Default",
            "dataset_format": 0,
            "description": dataset.description,
            "status": dataset.status,
            "data_sources": [{"data_type": 0, "data_path": dataset.data_path}],
            "work_path": dataset.work_path,
            "work_path_type": 0,
            "inner_work_path": inner,
            "inner_annotation_path": inner + "annotation/",
            "inner_data_path": inner + "data/",
            "inner_log_path": inner + "logs/",
            "inner_temp_path": inner + "temp/",
            "inner_task_path": inner + "task/",
            "create_time": dataset.create_time,
            "update_time": dataset.update_time,
            "current_version_id": dataset.current_version_id,
            "current_version_name": version.name if version else None,
            "next_version_num": dataset.next_version_num,
            "dataset_version_count": counts.get(dataset.id, 0),
            "total_sample_count": version.total_sample_count if version else 0,
            "annotated_sample_count": version.annotated_sample_count if version else 0,
            "total_sub_sample_count": 0,
            "annotated_sub_sample_count": 0,
            "unconfirmed_sample_count": 0,
            "deleted_sample_count": 0,
            "dataset_tags": TAGS.get(dataset.dataset_type, ["Image"]),
            "feature_supports": ["0"],
            "managed": False,
            "import_data": False,
            "workspace_id": dataset.workspace_id,
            "enterprise_project_id": "0",
            "versions": [render_version(dataset, version, statuses)] if version else [],
        }
        if with_labels:
            item["labels"] = dataset.labels
        if check_running_task:
            # Imports and publishes run inside the request, so no dataset task is ever running.
            item["exist_running_task"] = False
            item["running_tasks_id"] = []
        out.append(item)
    return out


# --- samples -----------------------------------------------------------------------------------


def sample_filter(sample_state: str | None, label_name: str | None) -> SampleFilter | None:
    """ListSamples filters: ``sample_state`` ``__ALL__`` (labelled) / ``__NONE__`` (unlabelled) and
    a classification ``label_name``."""
    if sample_state not in (None, LABELLED, UNLABELLED):
        raise invalid(f"sample_state must be {LABELLED} (labelled) or {UNLABELLED} (unlabelled)")
    if sample_state is None and not label_name:
        return None

    def keep(sample: ManifestSample) -> bool:
        if sample_state == LABELLED and not sample.annotations:
            return False
        if sample_state == UNLABELLED and sample.annotations:
            return False
        return not label_name or label_name in sample.labels

    return keep


def _voc_labels(store: ObjectStore, loc: str) -> tuple[list[dict[str, Any]], list[int] | None]:
    """Labels (with ``bndbox`` features) and ``[w, h, d]`` of a VOC file; nothing if unreadable."""
    try:
        ref = parse_uri(loc)
        voc = parse_voc(store.get_bytes(ref.bucket, ref.key, max_bytes=MAX_VOC_BYTES))
    except StorageError:
        return [], None
    labels = []
    for obj in voc.objects:
        prop: dict[str, Any] = {}
        if isinstance(obj, VocBox):
            prop = {
                "@modelarts:shape": "bndbox",
                "@modelarts:feature": [[obj.xmin, obj.ymin], [obj.xmax, obj.ymax]],
            }
        elif obj.kind:
            prop = {"@modelarts:shape": obj.kind}
        labels.append({"name": obj.name, "type": 1, "property": prop})
    size = None
    if voc.width and voc.height:
        size = [voc.width, voc.height, voc.depth or 3]
    return labels, size


def render_sample(store: ObjectStore, sample: ManifestSample) -> dict[str, Any]:
    """DescribeSampleResp (§5): detection labels are read from the sample's VOC file."""
    labels: list[dict[str, Any]] = []
    metadata: dict[str, Any] = {}
    for annotation in sample.annotations:
        kind = annotation.get("type")
        if kind == OBJECT_DETECTION and sample.annotation_loc:
            voc_labels, size = _voc_labels(store, sample.annotation_loc)
            labels.extend(voc_labels)
            if size:
                metadata["@modelarts:size"] = size
            continue
        name = annotation.get("name")
        if not isinstance(name, str):
            continue
        prop = annotation.get("property")
        label: dict[str, Any] = {
            "name": name,
            "type": LABEL_TYPES.get(str(kind), 0),
            "property": prop if isinstance(prop, dict) else {},
        }
        annotated_by = annotation.get("annotated-by", annotation.get("annotated_by"))
        if isinstance(annotated_by, str):
            label["annotated_by"] = "human" if annotated_by == "human" else "auto"
        if isinstance(annotation.get("confidence"), int | float):
            label["score"] = annotation["confidence"]
        labels.append(label)
    try:
        ref = parse_uri(sample.source)
        name, directory = ref.name, to_api_path(ref.parent)
    except InvalidKeyError:
        name, directory = sample.source.rpartition("/")[2], sample.source.rpartition("/")[0] + "/"
    return {
        "sample_id": sample_id(sample.source),
        "sample_name": name,
        "sample_dir": directory,
        "source": sample.source,
        "sample_type": 0,
        "sample_status": LABELLED if sample.annotations else UNLABELLED,
        "labels": labels,
        "metadata": metadata,
    }


def list_samples(
    store: ObjectStore,
    version: DatasetVersion,
    *,
    offset: int,
    limit: int,
    order: str,
    keep: SampleFilter | None,
) -> dict[str, Any]:
    """ListSamples over a version manifest, streamed; ``sample_count`` is the number matching."""
    try:
        total, page = page_samples(
            store, version.manifest_uri, offset=offset, limit=limit, descending=order == "desc", keep=keep
        )
    except ObjectNotFoundError:
        raise ApiError("ModelArts.4312", f"manifest of version {version.name} is missing") from None
    except StorageError as exc:
        raise ApiError(
            "ModelArts.4314", f"cannot read the manifest of version {version.name}: {exc}"
        ) from None
    return {"sample_count": total, "samples": [render_sample(store, s) for s in page]}


def ratio_range(text: str | None) -> tuple[float, float] | None:
    """``train_evaluate_ratio`` filter ``"min,max"``; 400 ModelArts.0101 when malformed."""
    if text is None:
        return None
    low, sep, high = text.partition(",")
    try:
        bounds = (float(parse_ratio(low)), float(parse_ratio(high)))
    except ValueError:
        bounds = None
    if not sep or bounds is None or bounds[0] > bounds[1]:
        raise invalid("train_evaluate_ratio must be 'min,max' with 0 <= min <= max <= 1")
    return bounds


def version_ratio(version: DatasetVersion) -> float:
    return float(parse_ratio(version.train_evaluate_sample_ratio))
