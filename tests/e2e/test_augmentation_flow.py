"""sys_data_augmentation through the API: the official create-augmentation.json body on real photos.

Runs the real API app and the real runner in-process (``tests/support/stack.py``). Datasets are
registered from OBS-style folders: one folder per label (classification), image + VOC XML side by
side (detection).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dsproc.settings import Settings
from operators import registry
from operators.decode import decode_image
from operators.sample import Sample
from storage.db.engine import make_engine, make_session_factory
from storage.db.repositories import DatasetRepository, TaskRepository
from storage.manifest import IMAGE_CLASSIFICATION, OBJECT_DETECTION, sample_id
from storage.uris import parse_uri
from storage.voc import VocAnnotation, VocBox, dump_voc, parse_voc
from tests.conftest import EXAMPLES, PHOTOS
from tests.support.stack import Stack, in_process_stack
from workers.context import WorkerContext
from workers.jobs.processing import ProcessingJob
from workers.samples import encode, rng_for, seed_for

IN, OUT = "aug-in", "aug-out"
KEPT, MODIFIED, DELETED, ADDED = 0, 1, 2, 3
LABELS = {
    "flower": ["mate-LadyBird.jpg", "mate-YellowFlower.jpg", "mate-FreshFlower.jpg"],
    "field": ["mate-GreenMeadow.jpg", "mate-Dune.jpg"],
}


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    with in_process_stack(tmp_path) as s:
        s.store.ensure_bucket(IN)
        s.store.ensure_bucket(OUT)
        yield s


def small_jpeg(path: Path, side: int = 192) -> bytes:
    """A real photo, shrunk so the test stays quick."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def read(stack: Stack, object_uri: str) -> bytes:
    ref = parse_uri(object_uri)
    return stack.store.get_bytes(ref.bucket, ref.key)


def data_files(stack: Stack, output_path: str) -> dict[str, bytes]:
    """Every file under ``{output}/Data/`` by relative name."""
    root = parse_uri(output_path if output_path.endswith("/") else output_path + "/")
    prefix = root.key + "Data/"
    return {
        info.key[len(prefix) :]: stack.store.get_bytes(root.bucket, info.key)
        for info in stack.store.list(root.bucket, prefix)
    }


def relative_manifest(stack: Stack, output_path: str) -> str:
    """output.manifest with the output folder's URI cut out of every path."""
    root = parse_uri(output_path if output_path.endswith("/") else output_path + "/")
    text = stack.store.get_bytes(root.bucket, root.key + "output.manifest").decode()
    assert root.uri() in text
    return text.replace(root.uri(), "{output}/")


def manifest_lines(stack: Stack, output_path: str) -> list[dict[str, Any]]:
    text = read(stack, output_path.rstrip("/") + "/output.manifest").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_example(stack: Stack, body: dict[str, Any]) -> tuple[Any, list[Any]]:
    task = stack.run_task(body)
    (version,) = stack.versions(task["task_id"])
    assert version.status == 2, version.error_msg
    return version, stack.results(version.id)


def noise_evidence(result: Any) -> dict[str, Any]:
    (found,) = [e for e in result.result_description if e["operator"] == "AddNoise"]
    return found


def test_add_noise_example_on_a_classification_dataset(stack: Stack, tmp_path: Path) -> None:
    files = {
        f"{label}/{name}": small_jpeg(PHOTOS / name) for label, names in LABELS.items() for name in names
    }
    for rel, data in files.items():
        stack.put_file(IN, f"cls/{rel}", data)
    dataset = stack.create_dataset("flowers", f"/{IN}/cls/", work_path=f"/{OUT}/cls/")
    assert dataset["total_sample_count"] == len(files)

    body = stack.example(EXAMPLES / "create-augmentation.json", dataset)
    assert body["template"]["operator_params"][0]["params"]["AddNoise"] == "1"  # the example, as-is
    version, results = run_example(stack, body)
    n = len(files)

    # counters: every original kept, one noisy copy added per original
    assert version.origin_sample_count == n and version.add_sample_count == n
    assert version.unmodified_sample_count + version.modified_sample_count == n
    assert version.deleted_sample_count == 0
    by_prop: dict[int, list[Any]] = {}
    for r in results:
        by_prop.setdefault(r.result_property, []).append(r)
    assert len(by_prop[ADDED]) == n and len(by_prop.get(KEPT, [])) + len(by_prop.get(MODIFIED, [])) == n

    # each added record: its origin, the new file beside the original's label, operator/params/seed
    seed = seed_for(version.id)
    originals = {f"obs://{IN}/cls/{rel}": rel for rel in files}
    added_sources = {}
    for r in by_prop[ADDED]:
        rel = originals[r.origin_source]
        label, name = rel.split("/")
        stem = name.rsplit(".", 1)[0]
        assert r.new_source.endswith(f"/Data/{label}/{stem}_AddNoise.jpg")
        assert r.sample_id == sample_id(r.new_source)
        evidence = noise_evidence(r)
        assert evidence["params"] == {"noise_type": "Gauss", "loc": 0.0, "scale": 1.0, "per_channel": False}
        assert evidence["seed"][:2] == [seed, int(sample_id(r.origin_source)[:16], 16)]
        assert evidence["source_name"] == name
        added_sources[r.origin_source] = (r.new_source, evidence)
    assert set(added_sources) == set(originals)

    # the added file is exactly the recorded noise draw on the original, encoded as the worker does
    for origin, (new_source, evidence) in added_sources.items():
        pixels = decode_image(read(stack, origin)).pixels
        op = registry.build("AddNoise", body["template"]["operator_params"][0]["params"])
        source = Sample(
            sample_id=sample_id(origin), source=origin, name="x.jpg", pixels=pixels, format="JPEG"
        )
        rng = rng_for(seed, sample_id(origin), evidence["seed"][2])
        (replayed,) = op.apply(source, rng).added
        assert encode(replayed)[0] == read(stack, new_source)
        noisy = decode_image(read(stack, new_source)).pixels.astype(int)
        assert 0.3 < np.abs(noisy - pixels.astype(int)).mean() < 3  # σ = 1 noise plus JPEG rounding

    # output.manifest: originals + added, the label carried onto every added line
    lines = manifest_lines(stack, version.output_path)
    assert len(lines) == 2 * n
    assert {line["source"] for line in lines} == {r.new_source for r in results}
    by_source = {line["source"]: line for line in lines}
    kept_source = {r.origin_source: r.new_source for r in results if r.result_property != ADDED}
    for r in results:
        line = by_source[r.new_source]
        label = originals[r.origin_source].split("/")[0]
        assert [(a["type"], a["name"]) for a in line["annotation"]] == [(IMAGE_CLASSIFICATION, label)]
        assert line["source"].split("/Data/")[1].startswith(f"{label}/")
        if r.result_property == ADDED:  # the added line carries the original's annotation as-is
            assert line["annotation"] == by_source[kept_source[r.origin_source]]["annotation"]

    # the output is dataset version V002 with the same manifest
    with stack.sessions() as s:
        versions = {v.name: v for v in DatasetRepository(s).versions(dataset["dataset_id"])}
        s.expunge_all()
    assert set(versions) == {"V001", "V002"}
    v2 = versions["V002"]
    assert v2.total_sample_count == 2 * n
    published = [json.loads(x) for x in read(stack, v2.manifest_uri).decode().splitlines() if x.strip()]
    assert sorted(p["source"] for p in published) == sorted(line["source"] for line in lines)
    described = stack.client.get(f"/v2/{stack.project}/datasets/{dataset['dataset_id']}").json()
    assert described["current_version_name"] == "V002"

    # the same version run again writes byte-identical files: re-run the job for this version id
    # into another folder (the first run's DATASET output already holds the name V002)
    first = data_files(stack, version.output_path)
    again = rerun_into(stack, tmp_path, version.id, f"/{OUT}/rerun/")
    assert again.keys() == first.keys() and len(first) == 2 * n
    assert all(again[k] == first[k] for k in first)
    assert relative_manifest(stack, f"/{OUT}/rerun/{version.id}/") == relative_manifest(
        stack, version.output_path
    )

    # another version id draws other noise: the originals are copied as they were, the noisy ones differ
    other = rerun_into(stack, tmp_path, version.id, f"/{OUT}/other/", as_id="another-version-id")
    assert other.keys() == first.keys()
    for rel, data in first.items():
        assert (other[rel] == data) == ("_AddNoise." not in rel), rel


def rerun_into(
    stack: Stack, tmp_path: Path, version_id: str, obs_path: str, as_id: str | None = None
) -> dict[str, bytes]:
    """Run the processing job of ``version_id`` again into ``obs_path``: same id, so the same seed
    (``as_id`` pretends it is another version, which gets another seed)."""
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'meta.db'}", storage_root=tmp_path / "storage"
    )
    engine = make_engine(settings.resolved_database_url)
    ctx = WorkerContext(settings, engine, make_session_factory(engine), stack.store)
    with ctx.sessions() as s:
        version = TaskRepository(s).get_version(version_id)
        task = version.task
        s.expunge_all()
    version.work_path = {"type": "OBS", "path": obs_path}
    if as_id is not None:
        version.id = as_id

    class NoControl:
        def checkpoint(self, done: int, *, force: bool = False) -> None:
            return None

    try:
        _, output_path = ProcessingJob(ctx, task, version, NoControl()).run()
    finally:
        engine.dispose()
    return data_files(stack, output_path)


def voc_file(name: str, width: int, height: int, boxes: list[tuple[str, int, int, int, int]]) -> bytes:
    return dump_voc(
        VocAnnotation(
            filename=name,
            width=width,
            height=height,
            depth=3,
            objects=[VocBox(n, float(x0), float(y0), float(x1), float(y1)) for n, x0, y0, x1, y1 in boxes],
        )
    )


def test_flip_on_a_detection_dataset_mirrors_the_voc_boxes(stack: Stack) -> None:
    photos = {"ladybird": PHOTOS / "mate-LadyBird.jpg", "fruits": PHOTOS / "opencv-fruits.jpg"}
    boxes: dict[str, list[tuple[str, int, int, int, int]]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for stem, path in photos.items():
        data = small_jpeg(path, 240)
        w, h = Image.open(io.BytesIO(data)).size
        sizes[stem] = (w, h)
        boxes[stem] = [("thing", 10, 20, w // 2, h // 2), ("corner", w - 40, h - 30, w, h)]
        stack.put_file(IN, f"det/{stem}.jpg", data)
        stack.put_file(IN, f"det/{stem}.xml", voc_file(f"{stem}.jpg", w, h, boxes[stem]))
    dataset = stack.create_dataset("things", f"/{IN}/det/", work_path=f"/{OUT}/det/")
    assert dataset["total_sample_count"] == 2

    body = stack.example(EXAMPLES / "create-augmentation.json", dataset)
    op = body["template"]["operator_params"][0]
    op["name"] = "Flip"
    op["params"] = {
        "task_type": "object_detection",
        "dataset_type": "manifest",
        "Flip": "1",
        "lr_ud": "lr",
        "flip_p": "1",
        "total_status": "[3]",
        "filter_func": "data_augmentation",
        "do_validation": "True",
    }
    version, results = run_example(stack, body)
    assert version.origin_sample_count == 2 and version.add_sample_count == 2

    files = data_files(stack, version.output_path)
    assert set(files) == {
        f"{s}{suffix}" for s in photos for suffix in (".jpg", ".xml", "_Flip.jpg", "_Flip.xml")
    }
    for stem, (w, h) in sizes.items():
        ann = parse_voc(files[f"{stem}_Flip.xml"])
        assert (ann.filename, ann.width, ann.height) == (f"{stem}_Flip.jpg", w, h)
        got = [(b.name, b.xmin, b.ymin, b.xmax, b.ymax) for b in ann.boxes]
        assert got == [(n, w - x1, y0, w - x0, y1) for n, x0, y0, x1, y1 in boxes[stem]]
        original = decode_image(files[f"{stem}.jpg"]).pixels.astype(int)
        flipped = decode_image(files[f"{stem}_Flip.jpg"]).pixels.astype(int)
        assert np.abs(flipped - original[:, ::-1]).mean() < 2  # a mirror image (JPEG re-encoded)

    added = [r for r in results if r.result_property == ADDED]
    assert len(added) == 2
    for r in added:
        (evidence,) = [e for e in r.result_description if e["operator"] == "Flip"]
        assert evidence["draws"]["flipped"] is True and evidence["boxes"]["kept"] == 2
    for line in manifest_lines(stack, version.output_path):
        (det,) = [a for a in line["annotation"] if a["type"] == OBJECT_DETECTION]
        assert det["annotation-loc"] == line["source"].rsplit(".", 1)[0] + ".xml"
        assert det["annotation-format"] == "PASCAL VOC"


@pytest.mark.parametrize("name", ["StyleGAN", "CycleGAN"])
def test_gan_operators_are_refused_at_submission(stack: Stack, name: str) -> None:
    stack.put_file(IN, "one/a/x.jpg", small_jpeg(PHOTOS / "mate-Dune.jpg", 64))
    dataset = stack.create_dataset("one", f"/{IN}/one/", work_path=f"/{OUT}/one/")
    body = stack.example(EXAMPLES / "create-augmentation.json", dataset)
    body["template"]["operator_params"][0] = {"name": name, "params": {"resolution": "256"}}
    resp = stack.client.post(f"/v2/{stack.project}/processor-tasks", json=body)
    assert resp.status_code == 400
    assert resp.json()["error_code"].startswith("ModelArts.") and "not supported" in resp.json()["error_msg"]
    assert stack.states == []  # nothing was queued
