"""Shard rows of a sharded pass: plan, claim (compare-and-set), heartbeat, complete, fail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from storage.db.ids import now_ms
from storage.db.models import VersionShard

PENDING, RUNNING, DONE, FAILED = 0, 1, 2, 3


@dataclass(frozen=True)
class ShardSpec:
    """What the coordinator plans for one shard."""

    start: int
    count: int
    manifest: str
    features_uri: str


@dataclass(frozen=True)
class ShardState:
    shard_index: int
    start: int
    count: int
    state: int
    features_uri: str
    error: str | None


class ShardRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def plan(self, version_id: str, pass_index: int) -> list[ShardState]:
        """The pass's shards in order (empty when none were planned)."""
        rows = self.session.execute(
            select(
                VersionShard.shard_index,
                VersionShard.start,
                VersionShard.count,
                VersionShard.state,
                VersionShard.features_uri,
                VersionShard.error,
            )
            .where(VersionShard.task_version_id == version_id, VersionShard.pass_index == pass_index)
            .order_by(VersionShard.shard_index)
        ).all()
        return [ShardState(*row) for row in rows]

    def add(self, version_id: str, pass_index: int, shard_index: int, spec: ShardSpec) -> None:
        self.session.add(
            VersionShard(
                task_version_id=version_id,
                pass_index=pass_index,
                shard_index=shard_index,
                start=spec.start,
                count=spec.count,
                manifest=spec.manifest,
                features_uri=spec.features_uri,
                state=PENDING,
                attempts=0,
            )
        )

    def clear(self, version_id: str, pass_index: int | None = None) -> None:
        conds = [VersionShard.task_version_id == version_id]
        if pass_index is not None:
            conds.append(VersionShard.pass_index == pass_index)
        self.session.execute(delete(VersionShard).where(*conds))

    def claim(
        self, version_id: str, pass_index: int, owner: str, stale_before_ms: int
    ) -> VersionShard | None:
        """Take the first pending shard, or a running one whose owner stopped heartbeating.

        Compare-and-set: the UPDATE only matches while the shard is still claimable, so two workers
        racing for the same shard cannot both win; the loser tries the next one.
        """
        claimable = or_(
            VersionShard.state == PENDING,
            and_(VersionShard.state == RUNNING, VersionShard.heartbeat_at < stale_before_ms),
        )
        base = [VersionShard.task_version_id == version_id, VersionShard.pass_index == pass_index]
        candidates = self.session.scalars(
            select(VersionShard.shard_index).where(*base, claimable).order_by(VersionShard.shard_index)
        ).all()
        for index in candidates:
            result = self.session.execute(
                update(VersionShard)
                .where(*base, VersionShard.shard_index == index, claimable)
                .values(state=RUNNING, owner=owner, heartbeat_at=now_ms(), attempts=VersionShard.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                return self.session.get(VersionShard, (version_id, pass_index, index))
        return None

    def heartbeat(self, version_id: str, pass_index: int, shard_index: int, owner: str) -> bool:
        """Keep a claim alive; False when the shard was taken over (its owner should stop)."""
        result = self.session.execute(
            update(VersionShard)
            .where(*_mine(version_id, pass_index, shard_index, owner))
            .values(heartbeat_at=now_ms())
        )
        return result.rowcount == 1

    def complete(self, version_id: str, pass_index: int, shard_index: int, owner: str) -> bool:
        result = self.session.execute(
            update(VersionShard)
            .where(*_mine(version_id, pass_index, shard_index, owner))
            .values(state=DONE, heartbeat_at=now_ms())
        )
        return result.rowcount == 1

    def release(self, version_id: str, pass_index: int, shard_index: int, owner: str) -> None:
        """Give a claim back (the worker leaves: stop, time limit) so that another may take it."""
        self.session.execute(
            update(VersionShard)
            .where(*_mine(version_id, pass_index, shard_index, owner))
            .values(state=PENDING, owner=None)
        )

    def fail(self, version_id: str, pass_index: int, shard_index: int, owner: str, error: str) -> None:
        self.session.execute(
            update(VersionShard)
            .where(*_mine(version_id, pass_index, shard_index, owner))
            .values(state=FAILED, error=error[:2000], heartbeat_at=now_ms())
        )

    def reopen(self, version_id: str, pass_index: int, shard_index: int, owner: str) -> VersionShard | None:
        """Claim a done shard again (its features were lost); None unless it is done and planned."""
        result = self.session.execute(
            update(VersionShard)
            .where(
                VersionShard.task_version_id == version_id,
                VersionShard.pass_index == pass_index,
                VersionShard.shard_index == shard_index,
                VersionShard.state == DONE,
                VersionShard.manifest != "",
            )
            .values(state=RUNNING, owner=owner, heartbeat_at=now_ms(), attempts=VersionShard.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return None
        return self.session.get(VersionShard, (version_id, pass_index, shard_index))

    def finish_pass(self, version_id: str, pass_index: int) -> None:
        """The coordinator absorbed every shard: the manifest slices are no longer needed."""
        self.session.execute(
            update(VersionShard)
            .where(VersionShard.task_version_id == version_id, VersionShard.pass_index == pass_index)
            .values(manifest="")
        )

    def pass_finished(self, version_id: str, pass_index: int) -> bool:
        return (
            self.session.scalar(
                select(VersionShard.shard_index)
                .where(
                    VersionShard.task_version_id == version_id,
                    VersionShard.pass_index == pass_index,
                    VersionShard.manifest == "",
                )
                .limit(1)
            )
            is not None
        )

    def owners(self, version_id: str) -> Sequence[str]:
        """Distinct workers that claimed a shard of the version (diagnostics and tests)."""
        return self.session.scalars(
            select(VersionShard.owner)
            .where(VersionShard.task_version_id == version_id, VersionShard.owner.is_not(None))
            .distinct()
        ).all()


def _mine(version_id: str, pass_index: int, shard_index: int, owner: str) -> list[object]:
    return [
        VersionShard.task_version_id == version_id,
        VersionShard.pass_index == pass_index,
        VersionShard.shard_index == shard_index,
        VersionShard.owner == owner,
        VersionShard.state == RUNNING,
    ]
