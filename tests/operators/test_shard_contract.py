"""The extract/absorb contract of every shardable selection operator, on real images.

Observing the input batch by batch and extracting it in shards on separate extract-only copies
(out of order, as several workers would), then absorbing in input order, must give the same
verdicts with the same evidence.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from operators import registry
from operators.decode import decode_image
from operators.kinds import Features, OperatorEnv, SelectionOperator
from operators.sample import Sample, Verdict
from tests.conftest import FASHION, PHOTOS
from tests.operators.test_pcc import _load as load_fashion
from tests.operators.test_pcc import draw, make_env
from workers.jobs.sharding import decode_features, encode_features

BATCH, SHARD = 8, 16


def _photo_samples() -> list[Sample]:
    """20 photos, a recompressed copy of each and an identical copy of the first five, interleaved."""
    samples: list[Sample] = []
    paths = sorted(PHOTOS.glob("opencv-*.jpg"))[:20]
    for i, path in enumerate(paths):
        pixels = np.array(decode_image(path.read_bytes(), max_side=320).pixels)
        for quality, tag in ((92, "a"), (40, "b")):
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
            samples.append(_sample(buf.getvalue(), f"{tag}{i:02d}"))
    samples += [
        replace(samples[2 * i], sample_id=f"same{i}", source=f"obs://b/same{i}.jpg") for i in range(5)
    ]
    rng = np.random.default_rng(5)
    return [samples[i] for i in rng.permutation(len(samples))]


def _sample(data: bytes, name: str) -> Sample:
    decoded = decode_image(data)
    return Sample(
        sample_id=name,
        source=f"obs://b/{name}.jpg",
        name=f"{name}.jpg",
        label_dir="",
        data=data,
        format=decoded.format,
        pixels=decoded.pixels,
    )


def _with_order(samples: list[Sample]) -> list[Sample]:
    return [replace(s, order=i, evidence=[]) for i, s in enumerate(samples)]


def _observed(
    name: str, params: dict[str, str], env: OperatorEnv, samples: list[Sample]
) -> dict[str, Verdict]:
    op = registry.build(name, params)
    assert isinstance(op, SelectionOperator)
    op.begin(env)
    for start in range(0, len(samples), BATCH):
        op.observe(samples[start : start + BATCH])
    return op.decide()


def _sharded(
    name: str, params: dict[str, str], env: OperatorEnv, samples: list[Sample]
) -> dict[str, Verdict]:
    shards = [samples[i : i + SHARD] for i in range(0, len(samples), SHARD)]
    stored: dict[int, bytes] = {}
    for index in reversed(range(len(shards))):  # helpers may finish in any order
        extractor = registry.build(name, params)
        assert isinstance(extractor, SelectionOperator) and extractor.shardable
        extractor.begin_extract(env)
        batches: list[Features] = []
        for start in range(0, len(shards[index]), BATCH):
            batches.append(extractor.extract(shards[index][start : start + BATCH]))
        extractor.end_extract()
        stored[index] = encode_features(batches)  # as they travel between workers
    op = registry.build(name, params)
    assert isinstance(op, SelectionOperator)
    op.begin(env)
    for index in range(len(shards)):
        for features in decode_features(stored[index]):
            op.absorb(features)
    return op.decide()


def _same(a: dict[str, Verdict], b: dict[str, Verdict]) -> None:
    assert set(a) == set(b)
    for key in a:
        assert (a[key].keep, a[key].evidence) == (b[key].keep, b[key].evidence), key


def test_dedup_shards_decide_as_one_pass() -> None:
    samples = _with_order(_photo_samples())
    env = OperatorEnv(device="cpu", seed=3)
    plain = _observed("SimDeduplication", {}, env, samples)
    _same(plain, _sharded("SimDeduplication", {}, env, samples))
    dropped = {k for k, v in plain.items() if not v.keep}
    for i in range(5):  # identical bytes, wherever they fell: exactly one of the two is dropped
        assert len({f"same{i}", f"a{i:02d}"} & dropped) == 1
    assert sum(k.startswith("b") for k in dropped) >= 15  # most recompressed copies found


def test_rrd_shards_decide_as_one_pass() -> None:
    samples = _with_order(_photo_samples())
    env = OperatorEnv(device="cpu", seed=3)
    params = {"sample_ratio": "0.6", "n_clusters": "4"}
    plain = _observed("RRD", params, env, samples)
    _same(plain, _sharded("RRD", params, env, samples))
    assert sum(not v.keep for v in plain.values()) == len(samples) - round(0.6 * len(samples))


def test_pcc_shards_decide_as_one_pass(tmp_path: Path) -> None:
    folders_all = {
        d.name: [load_fashion(p, d.name) for p in sorted(d.glob("*.png"))] for d in sorted(FASHION.iterdir())
    }
    samples, wanted, protos, crits = draw(folders_all, seed=11)
    folders = {"obs://ex/protos/": protos, "obs://ex/crits/": crits}
    env = make_env(folders, tmp_path / "cache")
    params = {"prototype_sample_path": "obs://ex/protos/", "criticism_sample_path": "obs://ex/crits/"}
    samples = _with_order(samples)
    plain = _observed("PCC", params, env, samples)
    _same(plain, _sharded("PCC", params, env, samples))
    kept = {k for k, v in plain.items() if v.keep}
    assert len(kept & wanted) >= 0.9 * len(wanted)
