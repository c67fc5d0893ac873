"""Feature analysis (``sys_data_analyse``): measure every image, summarise, store the result JSON."""

from __future__ import annotations

import json
from itertools import chain

from operators import registry
from operators.analysis.operator import FeatureAnalysis
from operators.analysis.summary import SampleMetrics
from operators.decode import DecodeLimits
from storage.datasets import dataset_paths
from storage.db.engine import session_scope
from storage.db.models import ProcessorTask, SampleResult, TaskVersion
from storage.manifest import sample_id
from storage.uris import ObjectRef, parse_uri
from workers.context import WorkerContext
from workers.fetch import Fetcher, batched
from workers.inputs import iter_samples, resolve
from workers.jobs.base import JobControl, JobOutcome, ResultSink

RESULT_FILE = "analysis_result.json"


def _operator(version: TaskVersion) -> FeatureAnalysis:
    spec = (version.template.get("operator_params") or [{"id": "sys_data_analyse", "params": {}}])[0]
    op = registry.build(spec.get("id") or spec.get("name") or "sys_data_analyse", spec.get("params"))
    assert isinstance(op, FeatureAnalysis)
    return op


def run_analysis(
    ctx: WorkerContext, task: ProcessorTask, version: TaskVersion, control: JobControl
) -> JobOutcome:
    op = _operator(version)
    settings = ctx.settings
    limits = DecodeLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    with session_scope(ctx.sessions) as s:
        resolved = [resolve(s, task.project_id, spec) for spec in version.inputs]
        s.expunge_all()
    samples = chain.from_iterable(iter_samples(ctx.store, r) for r in resolved)

    records: list[SampleMetrics] = []
    pending: list[SampleResult] = []  # records wait for the summary's per-sample issues
    results = ResultSink(ctx, version.id)
    with Fetcher(ctx.store, settings.max_image_bytes) as fetcher:
        for batch in fetcher.stream(batched(samples, settings.batch_size)):
            for fetched in batch:
                source = fetched.sample.source
                sid = sample_id(source)
                if fetched.data is None:
                    record = SampleMetrics(sample_id=sid, source=source, error=fetched.error)
                else:
                    record = op.analyse(fetched.data, sample_id=sid, source=source, limits=limits)
                records.append(record)
                evidence = {"operator": op.name}
                if record.error is not None:
                    evidence["error"] = record.error
                else:
                    evidence["metrics"] = {k: round(float(v), 6) for k, v in (record.metrics or {}).items()}
                pending.append(
                    SampleResult(
                        sample_id=sid,
                        origin_source=source,
                        new_source=None,
                        result_property=0,
                        result_description=[evidence],
                    )
                )
            control.checkpoint(len(records))
    control.checkpoint(len(records), force=True)  # a completed version reports every sample
    result = op.summarize(records)
    issues = {o["sample_id"]: o["issues"] for o in result["outliers"]}
    for res in pending:
        if res.sample_id in issues:
            res.result_description[0]["issues"] = issues[res.sample_id]
        results.add(res)
    results.flush()

    payload = json.dumps(result, ensure_ascii=False, sort_keys=True).encode()
    for folder in _result_folders(resolved, version):
        ctx.store.ensure_bucket(folder.bucket)
        target = folder.join(RESULT_FILE)
        ctx.store.put_bytes(target.bucket, target.key, payload, content_type="application/json")
    n = len(records)
    counters = {
        "origin_sample_count": n,
        "unmodified_sample_count": n,
        "modified_sample_count": 0,
        "deleted_sample_count": 0,
        "add_sample_count": 0,
    }
    return JobOutcome(counters=counters, result=result, results_written=True)


def _result_folders(resolved: list, version: TaskVersion) -> list[ObjectRef]:  # type: ignore[type-arg]
    """Dataset input: ``annotation/evaluation/{V}/``; an OBS work_path: ``{work_path}{version id}/``."""
    folders = []
    first = resolved[0] if resolved else None
    if first is not None and first.dataset is not None and first.dataset_version is not None:
        folders.append(dataset_paths(first.dataset).evaluation(first.dataset_version.name))
    wp = version.work_path or {}
    if wp.get("type") == "OBS" and wp.get("path"):
        path = wp["path"] if wp["path"].endswith("/") else wp["path"] + "/"
        folders.append(parse_uri(path).join(f"{version.id}/"))
    return folders
