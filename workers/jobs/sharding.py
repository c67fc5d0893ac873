"""Sharded selection passes: any idle worker extracts a shard, the coordinating worker absorbs.

A shardable selection operator (``SelectionOperator.shardable``) does its expensive work in
``extract`` (embeddings, hashes, measurements per batch) and its bookkeeping in ``absorb``. When the
input holds more than ``DSPROC_SHARD_SIZE`` samples, the worker running the version (the
coordinator):

1. plans the pass once: one ``version_shards`` row per slice of the input, holding the slice's
   manifest lines, so a helper needs nothing else to read its samples (a redelivered version reuses
   its plan and every shard already done);
2. sends ``DSPROC_SHARD_HELPERS`` messages at most (``dsproc.extract_shards``) so idle workers help,
   then claims shards itself like any helper (so one worker alone still finishes);
3. absorbs shard i's features as soon as shard i is done, in input order, so the operator ends up
   exactly as if it had observed the whole input; it waits while the next shard is still being
   extracted elsewhere, and claims again a shard whose worker stopped heartbeating.

Features travel as ``.npz`` objects under ``{output}/.shards/`` and are removed when the pass ends.
The global step (neighbour search, clustering, scoring) then runs once, in the coordinator.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from operators.kinds import Features, SampleOperator, SelectionOperator
from storage.db.engine import session_scope
from storage.db.ids import now_ms
from storage.db.repositories import RUNNING as VERSION_RUNNING
from storage.db.repositories import TaskRepository
from storage.db.shards import DONE, FAILED, ShardRepository, ShardSpec, ShardState
from storage.errors import NotFoundError, ObjectNotFoundError
from storage.manifest import dump_line, parse_line
from storage.uris import parse_uri
from workers.context import WorkerContext
from workers.errors import StopRequested, WorkerError
from workers.fetch import Fetcher

if TYPE_CHECKING:
    from workers.jobs.processing import Output, ProcessingJob

log = logging.getLogger(__name__)

WAIT_S = 0.2  # how often a waiting coordinator looks at the shard table
STALE_AFTER_S = 60.0  # a running shard whose heartbeat is this old lost its worker
KEEP_IN_MEMORY = 4  # own shards' features kept in memory until their turn to be absorbed


def owner_id() -> str:
    """Names one extraction loop: host, process and a random suffix."""
    return f"{socket.gethostname()[:64]}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def encode_features(batches: list[Features]) -> bytes:
    """The features of a shard's batches as one ``.npz`` (plain arrays, no pickles)."""
    arrays = {f"{i}.{name}": value for i, batch in enumerate(batches) for name, value in batch.items()}
    buffer = io.BytesIO()
    np.savez(buffer, batches=np.array(len(batches)), **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def decode_features(data: bytes) -> list[Features]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        batches: list[Features] = [{} for _ in range(int(archive["batches"]))]
        for name in archive.files:
            if name != "batches":
                index, key = name.split(".", 1)
                batches[int(index)][key] = archive[name]
    return batches


@dataclass(frozen=True)
class ClaimedShard:
    pass_index: int
    shard_index: int
    start: int
    manifest: str
    features_uri: str

    @property
    def last(self) -> int:
        """Input number of the shard's last sample."""
        return self.start + sum(1 for line in self.manifest.splitlines() if line.strip()) - 1


def extract_shard(
    job: ProcessingJob, op: SelectionOperator, fetcher: Fetcher, shard: ClaimedShard, owner: str
) -> list[Features] | None:
    """Extract one claimed shard and store its features; None when the shard is no longer this
    worker's (taken over after a stale heartbeat, or the pass was cancelled).

    ``op`` is an extract-only copy (``begin_extract`` is called here, once per shard, so nothing one
    shard saw leaks into another). A failure is recorded on the shard (the coordinator fails the
    version with it) and raised. When the version stops running (stop request, failure elsewhere,
    deletion) ``StopRequested`` is raised; on that and on a time limit the claim is released
    rather than failed, so that whoever still runs the version can take the shard.
    """
    ctx, version_id = job.ctx, job.version.id
    key = (version_id, shard.pass_index, shard.shard_index, owner)
    try:
        op.begin_extract(job.operator_env())
        manifest = [parse_line(line) for line in shard.manifest.splitlines() if line.strip()]
        batches: list[Features] = []
        for batch in job.decoded(fetcher, manifest, shard.start):
            batches.append(op.extract(job.alive(batch, shard.pass_index)))
            with session_scope(ctx.sessions) as s:
                mine = ShardRepository(s).heartbeat(*key)
                running = TaskRepository(s).still_running(version_id)
            if not running:
                raise StopRequested("the version is no longer running")
            if not mine:
                log.info("shard %d of %s is no longer ours; dropping it", shard.shard_index, version_id)
                return None
        ref = parse_uri(shard.features_uri)
        ctx.store.put_bytes(ref.bucket, ref.key, encode_features(batches))
        with session_scope(ctx.sessions) as s:
            completed = ShardRepository(s).complete(*key)
        if not completed:  # taken over or cancelled meanwhile: its owner writes the same bytes
            return None
        return batches
    except (StopRequested, SoftTimeLimitExceeded):
        with session_scope(ctx.sessions) as s:
            ShardRepository(s).release(*key)
        raise
    except Exception as exc:
        message = str(exc) if isinstance(exc, WorkerError) else f"{exc.__class__.__name__}: {exc}"
        with session_scope(ctx.sessions) as s:
            ShardRepository(s).fail(*key, message)
        raise
    finally:
        op.end_extract()


def claim_shard(ctx: WorkerContext, version_id: str, pass_index: int, owner: str) -> ClaimedShard | None:
    stale_before = now_ms() - int(STALE_AFTER_S * 1000)
    with session_scope(ctx.sessions) as s:
        row = ShardRepository(s).claim(version_id, pass_index, owner, stale_before)
        if row is None:
            return None
        return ClaimedShard(row.pass_index, row.shard_index, row.start, row.manifest, row.features_uri)


class ShardedPass:
    """One sharded selection pass, run by the coordinating worker (see the module docstring)."""

    def __init__(self, job: ProcessingJob, index: int, op: SelectionOperator, output: Output) -> None:
        self.job, self.index, self.op, self.output = job, index, op, output
        self.ctx = job.ctx
        self.version_id = job.version.id
        self.owner = owner_id()
        self.local: dict[int, list[Features]] = {}
        self._extractor: SelectionOperator | None = None

    def run(self, fetcher: Fetcher) -> bool:
        """Absorb the whole input into the operator through shards; False (nothing done) when the
        input fits in one shard, and the caller runs the plain pass."""
        self.ctx.store.ensure_bucket(self.output.root.bucket)  # features are written before any output
        plan = self._plan()
        if not plan:
            return False
        if self.ctx.spawn_helpers is not None and self.ctx.settings.shard_helpers > 0:
            helpers = min(len(plan) - 1, self.ctx.settings.shard_helpers)
            try:
                self.ctx.spawn_helpers(self.version_id, self.index, helpers)
            except Exception:  # helpers are optional: this worker extracts every shard itself
                log.warning("could not ask for helpers on %s", self.version_id, exc_info=True)
        try:
            self._absorb_all(fetcher, plan)
            with session_scope(self.ctx.sessions) as s:
                ShardRepository(s).finish_pass(self.version_id, self.index)
        finally:
            self._remove_features(plan)
        return True

    # --- plan ---------------------------------------------------------------------------------

    def shard_size(self) -> int:
        batch = self.ctx.settings.batch_size
        return -(-self.ctx.settings.shard_size // batch) * batch

    def _plan(self) -> list[ShardState]:
        with session_scope(self.ctx.sessions) as s:
            repo = ShardRepository(s)
            if repo.pass_finished(self.version_id, self.index):  # an earlier delivery got past it
                repo.clear(self.version_id, self.index)
            existing = repo.plan(self.version_id, self.index)
        if existing:
            log.info(
                "version %s pass %d: reusing its plan of %d shards",
                self.version_id,
                self.index,
                len(existing),
            )
            return existing
        size = self.shard_size()
        # The listing is read (object storage, maybe slow) into a spool before the write
        # transaction, so the plan's one transaction is short: SQLite has one writer at a time.
        with tempfile.TemporaryFile() as spool:
            count = 0
            for sample in self.job.manifest_samples():
                spool.write(dump_line(sample).encode() + b"\n")
                count += 1
            if count <= size:
                return []
            spool.seek(0)
            lines = (line.decode() for line in spool)
            shards_root = self.output.root.join(f".shards/{self.version_id}/{self.index}/")
            with session_scope(self.ctx.sessions) as s:
                repo = ShardRepository(s)
                for i, start in enumerate(range(0, count, size)):
                    manifest = "".join(islice(lines, size))
                    uri = shards_root.join(f"{i:06d}.npz").uri()
                    repo.add(
                        self.version_id,
                        self.index,
                        i,
                        ShardSpec(start, min(size, count - start), manifest, uri),
                    )
                    s.flush()
                    s.expunge_all()  # a flushed shard's manifest text need not stay in memory
        with session_scope(self.ctx.sessions) as s:
            plan = ShardRepository(s).plan(self.version_id, self.index)
        log.info("version %s pass %d: %d samples in %d shards", self.version_id, self.index, count, len(plan))
        return plan

    # --- absorb -------------------------------------------------------------------------------

    def _absorb_all(self, fetcher: Fetcher, plan: list[ShardState]) -> None:
        next_index = 0
        while next_index < len(plan):
            state = self._state(next_index)
            if state.state == DONE:
                for features in self._features(fetcher, state):
                    self.op.absorb(features)
                self.job.tick(state.count)
                next_index += 1
            elif state.state == FAILED:
                last = state.start + state.count - 1
                raise WorkerError(
                    f"{self.op.name}: shard {state.shard_index} (samples {state.start}–{last}) failed: "
                    f"{state.error}"
                )
            elif not self._extract_one(fetcher):
                self.job.tick(0)  # waiting on another worker: still stoppable
                time.sleep(WAIT_S)

    def _state(self, shard_index: int) -> ShardState:
        with session_scope(self.ctx.sessions) as s:
            states = ShardRepository(s).plan(self.version_id, self.index)
        if shard_index >= len(states):  # the rows went with the version: deleted under the worker
            raise StopRequested("the version was deleted")
        return states[shard_index]

    def _extract_one(self, fetcher: Fetcher) -> bool:
        """Claim and extract the next claimable shard here; False when none is claimable."""
        shard = claim_shard(self.ctx, self.version_id, self.index, self.owner)
        if shard is None:
            return False
        try:
            batches = extract_shard(self.job, self.extractor(), fetcher, shard, self.owner)
        except (StopRequested, WorkerError, SoftTimeLimitExceeded):
            raise
        except Exception as exc:  # the same message as when a helper's shard fails
            raise WorkerError(
                f"{self.op.name}: shard {shard.shard_index} (samples {shard.start}–{shard.last}) failed: "
                f"{exc.__class__.__name__}: {exc}"
            ) from exc
        if batches is not None and len(self.local) < KEEP_IN_MEMORY:
            self.local[shard.shard_index] = batches
        return True

    def extractor(self) -> SelectionOperator:
        """A second instance of the operator for extraction: ``self.op`` holds the absorbed state."""
        if self._extractor is None:
            op = self.job.fresh_operator(self.index)
            assert isinstance(op, SelectionOperator)
            self._extractor = op
        return self._extractor

    def _features(self, fetcher: Fetcher, state: ShardState) -> list[Features]:
        if state.shard_index in self.local:
            return self.local.pop(state.shard_index)
        ref = parse_uri(state.features_uri)
        try:
            return decode_features(self.ctx.store.get_bytes(ref.bucket, ref.key))
        except ObjectNotFoundError:
            # Done in an earlier delivery whose features were already removed: extract it again here.
            log.info(
                "features of shard %d of %s are gone; extracting again", state.shard_index, self.version_id
            )
            with session_scope(self.ctx.sessions) as s:
                row = ShardRepository(s).reopen(self.version_id, self.index, state.shard_index, self.owner)
            if row is None:
                raise WorkerError(f"shard {state.shard_index} of {self.version_id} vanished") from None
            shard = ClaimedShard(self.index, state.shard_index, row.start, row.manifest, row.features_uri)
            batches = extract_shard(self.job, self.extractor(), fetcher, shard, self.owner)
            if batches is None:
                raise WorkerError(f"shard {state.shard_index} of {self.version_id} was taken over") from None
            return batches

    def _remove_features(self, plan: list[ShardState]) -> None:
        for state in plan:
            try:
                ref = parse_uri(state.features_uri)
                self.ctx.store.delete(ref.bucket, ref.key)
            except Exception:  # best effort: a leftover features object is garbage, not data
                log.debug("could not remove %s", state.features_uri, exc_info=True)


def help_with_shards(ctx: WorkerContext, version_id: str, pass_index: int) -> int:
    """A helper worker: extract shards of a running version's pass until none is claimable."""
    from workers.jobs.processing import ProcessingJob

    with session_scope(ctx.sessions) as s:
        try:
            version = TaskRepository(s).get_version(version_id)
        except NotFoundError:
            return 0
        if version.status != VERSION_RUNNING or version.stop_requested:
            return 0
        task = version.task
        s.expunge_all()
    done = 0
    try:
        job = ProcessingJob(ctx, task, version, control=None)
        op = job.ops[pass_index] if pass_index < len(job.ops) else None
        if not (isinstance(op, SelectionOperator) and job.shardable(pass_index)):
            log.warning("version %s has no shardable pass %d", version_id, pass_index)
            return 0
        env = job.operator_env()
        for before in job.ops[:pass_index]:
            if isinstance(before, SampleOperator):
                before.begin(env)
        owner = owner_id()
        with Fetcher(ctx.store, ctx.settings.max_image_bytes) as fetcher:
            while (shard := claim_shard(ctx, version_id, pass_index, owner)) is not None:
                if extract_shard(job, op, fetcher, shard, owner) is not None:
                    done += 1
    except StopRequested:
        log.info("version %s stopped; helper leaves", version_id)
    except Exception:  # recorded on the shard; the coordinator fails the version with it
        log.warning("helper on %s failed", version_id, exc_info=True)
    return done
