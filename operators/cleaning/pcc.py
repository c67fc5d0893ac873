"""PCC (sys_data_cleaning): keep the samples that look like the positive exemplars (prototypes) and
drop the ones that do not, or that look more like the negative exemplars (criticisms).

Embeddings come from the default EfficientNet-Lite0 or from the user's ``checkpoint_path``; they are
cached per image content (``OperatorEnv.cache_dir``), so a re-run does not recompute them. The
decision rule lives in ``operators/cleaning/functional.py`` and docs/operators-cleaning.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from operators.cleaning import functional as F
from operators.embeddings.backbone import Embedder, get_embedder, resize_batch
from operators.embeddings.cache import EmbeddingCache, content_key
from operators.embeddings.checkpoint import CheckpointError, checkpoint_embedder, parse_sidecar
from operators.errors import OperatorError
from operators.kinds import Features, OperatorEnv, SelectionOperator
from operators.params import ClusterCount, OperatorParams
from operators.registry import register
from operators.sample import Sample, Verdict

log = logging.getLogger(__name__)

MAX_CHECKPOINT_BYTES = 2 * 1024**3
_URI_PREFIXES = ("obs://", "s3://", "/")


def _optional_path(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    return value


class PccError(OperatorError):
    """PCC cannot run as asked (missing exemplars, bad cluster count, unreadable checkpoint)."""


@register
class PCC(SelectionOperator):
    """Prototype/criticism cleaning over CNN embeddings (see the module docstring)."""

    name = "PCC"
    template_id = "sys_data_cleaning"

    class Params(OperatorParams):
        prototype_sample_path: str = Field(min_length=1)
        criticism_sample_path: str | None = None
        n_clusters: ClusterCount = "auto"
        simlarity_threshold: float = Field(0.9, ge=0.0, le=1.0, allow_inf_nan=False)
        embedding_distance: float = Field(0.2, ge=0.0, le=1.0, allow_inf_nan=False)
        checkpoint_path: str | None = None

        @field_validator("criticism_sample_path", "checkpoint_path", mode="before")
        @classmethod
        def _optional(cls, value: Any) -> Any:
            return _optional_path(value)

        @field_validator("prototype_sample_path", "criticism_sample_path")
        @classmethod
        def _folder(cls, value: str | None) -> str | None:
            if value is not None and not value.strip().lower().startswith(_URI_PREFIXES):
                raise ValueError(f"{value!r} is not an obs://, s3:// or /bucket/folder path")
            return value.strip() if value is not None else None

    params: Params

    # --- set-up -------------------------------------------------------------------------------

    def begin(self, env: OperatorEnv) -> None:
        self.begin_extract(env)  # the embedder and its cache
        try:
            self._load_exemplars()
        except Exception:
            if self.cache is not None:
                self.cache.close()
            raise
        self.store = F.RowStore(self.embedder.dim, env.cache_dir if _writable(env.cache_dir) else None)
        self.ids: list[str] = []

    def _load_exemplars(self) -> None:
        self.prototypes, self.prototype_names = self._exemplars(
            self.params.prototype_sample_path, "prototype"
        )
        if len(self.prototypes) < 2:
            raise PccError(
                f"prototype_sample_path {self.params.prototype_sample_path} holds {len(self.prototypes)} "
                "readable image(s); PCC needs at least 2 prototype images"
            )
        self.criticisms: np.ndarray | None = None
        self.criticism_names: list[str] = []
        if self.params.criticism_sample_path:
            self.criticisms, self.criticism_names = self._exemplars(
                self.params.criticism_sample_path, "criticism"
            )
            if len(self.criticisms) == 0:
                raise PccError(
                    f"criticism_sample_path {self.params.criticism_sample_path} holds no readable image"
                )

    def _load_embedder(self) -> Embedder:
        path = self.params.checkpoint_path
        if not path:
            return get_embedder(self.env.device)
        data, sidecar = self._read_checkpoint(path)
        try:
            return checkpoint_embedder(data, path, self.env.device, parse_sidecar(sidecar, path))
        except CheckpointError as exc:
            raise PccError(f"checkpoint_path: {exc}") from exc

    def _read_checkpoint(self, path: str) -> tuple[bytes, bytes | None]:
        """Bytes of a local file, else of an object (``obs://``, ``s3://``, ``/bucket/key``), + sidecar."""
        local = Path(path)
        if not path.lower().startswith(("obs://", "s3://")) and local.exists():
            if local.is_dir():
                raise PccError(
                    f"checkpoint_path {path} is a folder; give the .pth/.pt file saved with torch.save "
                    "(TensorFlow checkpoints are not supported)"
                )
            if local.stat().st_size > MAX_CHECKPOINT_BYTES:
                raise PccError(f"checkpoint_path {path} is larger than {MAX_CHECKPOINT_BYTES} bytes")
            sidecar = Path(path + ".json")
            return local.read_bytes(), sidecar.read_bytes() if sidecar.is_file() else None
        if self.env.read_bytes is None:
            raise PccError(f"checkpoint_path {path} is not a local file and no object store is available")
        try:
            data = self.env.read_bytes(path)
        except Exception as exc:  # storage errors of any backend: the boundary with the outside world
            raise PccError(
                f"checkpoint_path {path} is neither a local file nor a readable object ({exc})"
            ) from exc
        try:
            sidecar_data: bytes | None = self.env.read_bytes(path + ".json")
        except Exception:
            sidecar_data = None
        return data, sidecar_data

    def _exemplars(self, folder: str, kind: str) -> tuple[np.ndarray, list[str]]:
        """Embeddings (unit rows) and sources of the decodable images in an exemplar folder."""
        if self.env.list_images is None:
            raise PccError(f"{kind} exemplars need an object store")
        rows: list[np.ndarray] = []
        names: list[str] = []
        batch: list[Sample] = []
        for sample in _guarded(self.env.list_images, folder, kind):
            if sample.pixels is None:
                log.info("%s exemplar %s skipped: %s", kind, sample.source, sample.decode_error)
                continue
            batch.append(sample)
            if len(batch) >= max(self.env.batch_size, self.embedder.batch_size):
                rows.append(self._embed_now(batch))
                names += [s.source for s in batch]
                batch = []
        if batch:
            rows.append(self._embed_now(batch))
            names += [s.source for s in batch]
        matrix = np.concatenate(rows) if rows else np.zeros((0, self.embedder.dim), np.float32)
        return matrix, names

    def _embed_now(self, samples: list[Sample]) -> np.ndarray:
        """Embeddings for ``samples``, from the cache where possible."""
        keys = [content_key(s) for s in samples]
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        missing = [i for i, k in enumerate(keys) if k not in cached]
        out = np.empty((len(samples), self.embedder.dim), np.float32)
        if missing:
            pixels = resize_batch([samples[i].pixels for i in missing], self.embedder.input_size)  # type: ignore[misc]
            rows = self.embedder.embed_resized(pixels)
            out[missing] = rows
            if self.cache is not None:
                self.cache.put_many((keys[i], rows[j]) for j, i in enumerate(missing))
        for i, k in enumerate(keys):
            if k in cached:
                out[i] = cached[k]
        return out

    # --- streaming ----------------------------------------------------------------------------

    shardable = True

    def begin_extract(self, env: OperatorEnv) -> None:
        """The embedder and its cache: all a shard worker needs (``begin`` adds the exemplars)."""
        self.env = env
        if getattr(self, "embedder", None) is None:  # called once per shard: load a checkpoint once
            self.embedder = self._load_embedder()
        self.cache = (
            EmbeddingCache(env.cache_dir, self.embedder.model_id, self.embedder.dim)
            if env.cache_dir is not None
            else None
        )
        self.computed = 0

    def end_extract(self) -> None:
        cache = getattr(self, "cache", None)  # None too when begin_extract failed before opening it
        if cache is not None:
            cache.close()

    def extract(self, batch: list[Sample]) -> Features:
        """Embeddings of the decodable samples (from the cache where it has them)."""
        live = [s for s in batch if s.pixels is not None]
        if not live:
            empty = np.zeros((0, self.embedder.dim), np.float32)
            return {"ids": np.array([], dtype=str), "embeddings": empty}
        before = self.cache.hits if self.cache is not None else 0
        rows = self._embed_now(live)
        hits = (self.cache.hits - before) if self.cache is not None else 0
        self.computed += len(live) - hits
        return {"ids": np.array([s.sample_id for s in live], dtype=str), "embeddings": rows}

    def absorb(self, features: Features) -> None:
        if len(features["ids"]) == 0:
            return
        self.store.write(len(self.ids), np.asarray(features["embeddings"], np.float32))
        self.ids += features["ids"].tolist()

    # --- decision -----------------------------------------------------------------------------

    def config(self) -> F.PccConfig:
        clusters = self.params.n_clusters
        return F.PccConfig(
            simlarity_threshold=self.params.simlarity_threshold,
            embedding_distance=self.params.embedding_distance,
            n_clusters=None if clusters == "auto" else int(clusters),
        )

    def decide(self) -> dict[str, Verdict]:
        n = len(self.ids)
        try:
            if n == 0:
                return {}
            clusters = self.params.n_clusters
            if clusters != "auto" and int(clusters) >= n:
                raise PccError(
                    f"ModelArts.4622: n_clusters ({clusters}) must be an integer smaller than the number of "
                    f"samples ({n})"
                )
            scores = F.score(
                self.store,
                self.prototypes,
                self.criticisms,
                self.config(),
                np.random.default_rng(self.env.seed),
            )
            return {
                sid: Verdict(bool(scores.keep[i]), self._evidence(scores, i))
                for i, sid in enumerate(self.ids)
            }
        finally:
            self.store.close()
            if self.cache is not None:
                log.info("PCC embeddings: %d computed, %d from cache", self.computed, self.cache.hits)
                self.cache.close()

    def _evidence(self, s: F.PccScores, i: int) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "rule": F.RULES[s.rule[i]],
            "similarity": round(float(s.prototype_score[i]), 4),
            "similarity_floor": round(s.floor, 4),
            "prototype": self.prototype_names[int(s.prototype_index[i])],
            "prototype_distance": round(float(s.prototype_distance[i]), 4),
            "cluster": int(s.cluster[i]),
            "model": self.embedder.model_id,
        }
        if (
            s.criticism_score is not None
            and s.criticism_index is not None
            and s.criticism_distance is not None
        ):
            ev["criticism_similarity"] = round(float(s.criticism_score[i]), 4)
            ev["criticism"] = self.criticism_names[int(s.criticism_index[i])]
            ev["criticism_distance"] = round(float(s.criticism_distance[i]), 4)
        return ev


def _guarded(list_images: Callable[[str], Iterator[Sample]], folder: str, kind: str) -> Iterator[Sample]:
    """The folder's samples; a storage error (missing bucket or folder) becomes a ``PccError``."""
    try:
        iterator = iter(list_images(folder))
        while True:
            try:
                sample = next(iterator)
            except StopIteration:
                return
            yield sample
    except OperatorError:
        raise
    except Exception as exc:  # any backend's storage error: the boundary with the outside world
        raise PccError(f"cannot read {kind} exemplars from {folder}: {exc}") from exc


def _writable(directory: Path | None) -> bool:
    if directory is None:
        return False
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return True
    except OSError:
        return False
