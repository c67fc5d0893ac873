"""The processing job (validation, cleaning, selection, augmentation templates).

Samples stream through the operator list in batches. A selection operator (dedup, cleaning) needs
every sample before it can decide, so each one costs a streaming pass over the input (with the
operators before it applied); a final pass applies everything and writes ``Data/…``. The output
manifest is written last and once: the version exists iff ``output.manifest`` exists.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from operators import registry
from operators.decode import DecodeLimits
from operators.errors import OperatorError
from operators.kinds import OperatorEnv, SampleOperator, SelectionOperator
from operators.registry import Operator
from operators.sample import Sample, Verdict
from storage.datasets import publish_version, scan_source
from storage.db.engine import session_scope
from storage.db.models import ProcessorTask, SampleResult, TaskVersion
from storage.db.repositories import DatasetRepository
from storage.errors import NotFoundError, StorageError
from storage.manifest import ManifestSample, dump_line, read_manifest, sample_id
from storage.objectstore.base import ObjectStore
from storage.uris import ObjectRef, parse_uri, to_api_path
from workers.context import WorkerContext
from workers.device import resolve_device
from workers.errors import InputError, WorkerError
from workers.fetch import Fetcher, fetched_batches
from workers.inputs import iter_samples, resolve
from workers.jobs.base import JobControl, JobOutcome, ResultSink
from workers.jobs.sharding import ShardedPass
from workers.samples import (
    decode_ahead,
    detection_xml,
    encode,
    manifest_line,
    rng_for,
    seed_for,
)

log = logging.getLogger(__name__)

KEPT, MODIFIED, DELETED, ADDED = 0, 1, 2, 3
VALIDATION_OPERATOR = "MetaValidation"


def build_operators(template: dict[str, Any]) -> list[Operator]:
    """The template's operators, with MetaValidation first when an operator asks for validation."""
    ops = [registry.build(p.get("name") or p.get("id"), p.get("params")) for p in template["operator_params"]]
    wants_validation = any(getattr(op.params, "do_validation", False) for op in ops)
    if wants_validation and ops and ops[0].name != VALIDATION_OPERATOR:
        try:
            ops.insert(0, registry.build(VALIDATION_OPERATOR, {}))
        except registry.UnknownOperatorError:
            log.info("do_validation asked for, but %s is not installed", VALIDATION_OPERATOR)
    return ops


@dataclass
class Output:
    """Where a version writes: ``{root}Data/…`` and ``{root}output.manifest``."""

    root: ObjectRef
    dataset_id: str | None = None
    version_name: str | None = None


@dataclass
class Lineage:
    """One input sample and what the operators made of it."""

    original: Sample | None
    added: list[Sample] = field(default_factory=list)
    deleted_evidence: list[dict[str, Any]] = field(default_factory=list)


class Pipeline:
    """Applies operators ``ops[:upto]`` to one input sample, using earlier selection verdicts."""

    def __init__(self, ops: list[Operator], verdicts: dict[int, dict[str, Verdict]], seed: int) -> None:
        self.ops, self.verdicts, self.seed = ops, verdicts, seed

    def run(self, sample: Sample, upto: int) -> Lineage:
        lineage = Lineage(sample)
        for index, op in enumerate(self.ops[:upto]):
            if isinstance(op, SelectionOperator):
                self._select(lineage, index, op)
            elif isinstance(op, SampleOperator):
                self._apply(lineage, index, op)
            else:  # pragma: no cover - guarded at build time
                raise WorkerError(f"operator {op.name} cannot process samples")
        return lineage

    def _select(self, lineage: Lineage, index: int, op: Operator) -> None:
        verdicts = self.verdicts.get(index, {})

        def keep(s: Sample) -> bool:
            verdict = verdicts.get(s.sample_id)
            if verdict is None:
                return True
            s.evidence.append({"operator": op.name, **verdict.evidence, "kept": verdict.keep})
            return verdict.keep

        if lineage.original is not None and not keep(lineage.original):
            lineage.deleted_evidence = lineage.original.evidence
            lineage.original = None
        lineage.added = [s for s in lineage.added if keep(s)]

    def _apply(self, lineage: Lineage, index: int, op: SampleOperator) -> None:
        handles_bad = getattr(op, "handles_undecodable", False)

        def apply(s: Sample) -> tuple[Sample | None, list[Sample]]:
            if s.pixels is None and not handles_bad:
                return s, []
            outcome = op.apply(s, rng_for(self.seed, s.sample_id, index))
            for k, added in enumerate(outcome.added):
                key = f"{s.sample_id}:{index}:{k}:{added.name}"
                added.sample_id = hashlib.md5(key.encode()).hexdigest()
                added.parent_id = s.sample_id
            return outcome.sample, outcome.added

        new_added: list[Sample] = []
        if lineage.original is not None:
            kept, extra = apply(lineage.original)
            if kept is None:
                lineage.deleted_evidence = lineage.original.evidence
            lineage.original = kept
            new_added += extra
        for s in lineage.added:
            kept, extra = apply(s)
            new_added += ([kept] if kept is not None else []) + extra
        lineage.added = new_added


class ProcessingJob:
    def __init__(self, ctx: WorkerContext, task: ProcessorTask, version: TaskVersion, control: Any) -> None:
        self.ctx, self.task, self.version, self.control = ctx, task, version, control
        settings = ctx.settings
        self.limits = DecodeLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
        self.seed = seed_for(version.id)
        try:
            self.ops = build_operators(version.template)
        except Exception as exc:
            raise WorkerError(f"cannot build operators: {exc}") from exc
        self.verdicts: dict[int, dict[str, Verdict]] = {}
        self.pipeline = Pipeline(self.ops, self.verdicts, self.seed)
        self.done = 0
        self._env: OperatorEnv | None = None

    def fresh_operator(self, index: int) -> Operator:
        """A new, not yet begun instance of operator ``index`` (the same params)."""
        return build_operators(self.version.template)[index]

    # --- inputs -------------------------------------------------------------------------------

    def manifest_samples(self) -> Iterator[ManifestSample]:
        with session_scope(self.ctx.sessions) as s:
            resolved = [resolve(s, self.task.project_id, spec) for spec in self.version.inputs]
            s.expunge_all()
        return chain.from_iterable(iter_samples(self.ctx.store, r) for r in resolved)

    def decoded(
        self, fetcher: Fetcher, manifest: Iterable[ManifestSample] | None = None, start: int = 0
    ) -> Iterator[list[Sample]]:
        """Decoded samples in batches (of the whole input, or of ``manifest`` whose first sample is
        input number ``start``). While the caller works on a batch, the next one decodes and the one
        after it downloads."""
        source = self.manifest_samples() if manifest is None else manifest
        batches = fetched_batches(fetcher, source, self.ctx.settings.batch_size)
        return decode_ahead(batches, self.limits, start)

    def operator_env(self) -> OperatorEnv:
        if self._env is None:
            self._env = self._make_env()
        return self._env

    def _make_env(self) -> OperatorEnv:
        store = self.ctx.store

        def read_bytes(uri: str) -> bytes:
            ref = parse_uri(uri)
            return store.get_bytes(ref.bucket, ref.key)

        def list_images(folder: str) -> Iterator[Sample]:
            scan = scan_source(store, folder if folder.endswith("/") else folder + "/")
            with Fetcher(store, self.ctx.settings.max_image_bytes) as fetcher:
                batches = fetched_batches(fetcher, scan.samples, self.ctx.settings.batch_size)
                for batch in decode_ahead(batches, self.limits):
                    yield from batch

        return OperatorEnv(
            device=resolve_device(self.ctx.settings.device),
            seed=self.seed,
            batch_size=self.ctx.settings.batch_size,
            cache_dir=self.ctx.settings.data_dir / "cache",
            read_bytes=read_bytes,
            list_images=list_images,
        )

    # --- outputs ------------------------------------------------------------------------------

    def _output(self) -> Output:
        wp = self.version.work_path or {}
        if wp.get("type") == "OBS":
            return Output(
                parse_uri(wp["path"] if wp["path"].endswith("/") else wp["path"] + "/").join(
                    f"{self.version.id}/"
                )
            )
        if wp.get("type") == "DATASET":
            with session_scope(self.ctx.sessions) as s:
                repo = DatasetRepository(s)
                try:
                    dataset = repo.get(self.task.project_id, wp["path"])
                except NotFoundError as exc:
                    raise InputError(str(exc)) from exc
                if repo.version_name_exists(dataset.id, wp["version_name"]):
                    raise WorkerError(f"dataset version {wp['version_name']} already exists (ModelArts.4371)")
                root = parse_uri(dataset.work_path).join(f"{self.version.id}/")
                return Output(root, dataset.id, wp["version_name"])
        raise WorkerError("this template needs a work_path of type OBS or DATASET")

    # --- run ----------------------------------------------------------------------------------

    def run(self) -> tuple[dict[str, int], str]:
        env = self.operator_env()
        for op in self.ops:
            try:
                op.begin(env)
            except OperatorError as exc:  # e.g. PCC: unreadable checkpoint or exemplar folder
                raise WorkerError(f"{op.name}: {exc}") from exc
        output = self._output()
        with Fetcher(self.ctx.store, self.ctx.settings.max_image_bytes) as fetcher:
            for index, op in enumerate(self.ops):
                if isinstance(op, SelectionOperator):
                    if not (self.shardable(index) and ShardedPass(self, index, op, output).run(fetcher)):
                        for batch in self.decoded(fetcher):
                            op.observe(self.alive(batch, index))
                            self.tick(len(batch))
                    try:
                        self.verdicts[index] = op.decide()
                    except OperatorError as exc:  # e.g. RRD n_clusters ≥ samples (ModelArts.4622)
                        raise WorkerError(f"{op.name}: {exc}") from exc
            return self._final_pass(fetcher, output)

    def alive(self, batch: list[Sample], index: int) -> list[Sample]:
        """What reaches operator ``index``: the batch after the operators before it, decodable only."""
        alive = []
        for sample in batch:
            lineage = self.pipeline.run(sample, index)
            alive += [s for s in [lineage.original, *lineage.added] if s is not None and s.pixels is not None]
        return alive

    def shardable(self, index: int) -> bool:
        """Operator ``index`` may run sharded: it splits extract/absorb, sharding is on, and no
        selection operator runs before it (a shard worker would need that one's verdicts)."""
        op = self.ops[index]
        return (
            isinstance(op, SelectionOperator)
            and op.shardable
            and self.ctx.settings.shard_size > 0
            and not any(isinstance(o, SelectionOperator) for o in self.ops[:index])
        )

    def tick(self, n: int, *, force: bool = False) -> None:
        """Count ``n`` more samples through the current pass; progress is reported in input samples
        (every pass sees the whole input, so the job's passes are averaged) and a stop is noticed."""
        self.done += n
        passes = 1 + sum(isinstance(op, SelectionOperator) for op in self.ops)
        self.control.checkpoint(self.done // passes, force=force)

    def _final_pass(self, fetcher: Fetcher, output: Output) -> tuple[dict[str, int], str]:
        store = self.ctx.store
        store.ensure_bucket(output.root.bucket)
        counters = dict.fromkeys(("origin", "unmodified", "modified", "deleted", "add"), 0)
        results = ResultSink(self.ctx, self.version.id)
        lines = ManifestSpool()
        used: set[str] = set()
        data_dir = output.root.join("Data/")

        def write(sample: Sample) -> tuple[str, ManifestSample]:
            payload, name = encode(sample)
            rel = unique_name(used, sample.label_dir + name, sample.sample_id)
            ref = data_dir.join(rel)
            store.put_bytes(ref.bucket, ref.key, payload)
            xml_uri = None
            xml = detection_xml(sample, rel.rsplit("/", 1)[-1])
            if xml is not None:
                xml_ref = data_dir.join(rel.rsplit(".", 1)[0] + ".xml")
                store.put_bytes(xml_ref.bucket, xml_ref.key, xml)
                xml_uri = xml_ref.uri()
            return ref.uri(), manifest_line(sample, ref.uri(), xml_uri)

        for batch in self.decoded(fetcher):
            for sample in batch:
                origin_source = sample.source
                lineage = self.pipeline.run(sample, len(self.ops))
                counters["origin"] += 1
                if lineage.original is None:
                    counters["deleted"] += 1
                    results.add(
                        SampleResult(
                            sample_id=sample.sample_id,
                            origin_source=origin_source,
                            new_source=None,
                            result_property=DELETED,
                            result_description=lineage.deleted_evidence,
                        )
                    )
                else:
                    kept = lineage.original
                    if kept.pixels is None and kept.data is None:
                        raise WorkerError(f"operator left {origin_source} without image data")
                    uri, line = write(kept)
                    lines.add(line)
                    prop = MODIFIED if kept.changed else KEPT
                    counters["modified" if prop == MODIFIED else "unmodified"] += 1
                    results.add(
                        SampleResult(
                            sample_id=sample.sample_id,
                            origin_source=origin_source,
                            new_source=uri,
                            result_property=prop,
                            result_description=kept.evidence,
                        )
                    )
                for added in lineage.added:
                    uri, line = write(added)
                    lines.add(line)
                    counters["add"] += 1
                    results.add(
                        SampleResult(
                            sample_id=sample_id(uri),
                            origin_source=origin_source,
                            new_source=uri,
                            result_property=ADDED,
                            result_description=added.evidence,
                        )
                    )
            self.tick(len(batch))
        self.tick(0, force=True)  # a completed version reports every sample as processed

        results.flush()
        manifest_ref = output.root.join("output.manifest")
        lines.write(store, manifest_ref)
        if output.dataset_id is not None:
            self._publish(output, StoredManifest(store, manifest_ref), counters)
        return {f"{k}_sample_count": v for k, v in counters.items()}, to_api_path(output.root)

    def _publish(self, output: Output, lines: Iterable[ManifestSample], counters: dict[str, int]) -> None:
        """A DATASET work_path: the output becomes a new version of that dataset."""
        try:
            with session_scope(self.ctx.sessions) as s:
                dataset = DatasetRepository(s).get(
                    self.task.project_id, output.dataset_id or "", for_update=True
                )
                version = publish_version(
                    s,
                    self.ctx.store,
                    dataset,
                    output.version_name or "",
                    lines,
                    counters={
                        "add_sample_count": counters["add"],
                        "modified_sample_count": counters["modified"],
                        "deleted_sample_count": counters["deleted"],
                    },
                )
                version.processor_task_id = self.task.id
        except StorageError as exc:
            raise WorkerError(f"cannot publish dataset version {output.version_name}: {exc}") from exc


class ManifestSpool:
    """Output manifest lines spooled to a temporary file (memory stays flat), uploaded once at the end."""

    def __init__(self) -> None:
        # closed by write(); on a failed run the garbage collector removes it
        self._file = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115

    def add(self, sample: ManifestSample) -> None:
        self._file.write(dump_line(sample).encode() + b"\n")

    def write(self, store: ObjectStore, ref: ObjectRef) -> None:
        self._file.seek(0)
        store.put_stream(ref.bucket, ref.key, self._file, content_type="application/jsonl")  # type: ignore[arg-type]
        self._file.close()


class StoredManifest:
    """A manifest object that can be iterated more than once (read lazily each time)."""

    def __init__(self, store: ObjectStore, ref: ObjectRef) -> None:
        self.store, self.ref = store, ref

    def __iter__(self) -> Iterator[ManifestSample]:
        return read_manifest(self.store, self.ref)


def unique_name(used: set[str], rel: str, key: str) -> str:
    """``rel`` unless another sample already took it; then the sample id goes into the stem."""
    if rel not in used:
        used.add(rel)
        return rel
    stem, dot, ext = rel.rpartition(".")
    candidate = f"{stem}_{key[:8]}{dot}{ext}" if dot else f"{rel}_{key[:8]}"
    used.add(candidate)
    return candidate


def run_processing(
    ctx: WorkerContext, task: ProcessorTask, version: TaskVersion, control: JobControl
) -> JobOutcome:
    counters, output_path = ProcessingJob(ctx, task, version, control).run()
    return JobOutcome(counters=counters, output_path=output_path, results_written=True)
