"""sys_data_validation through the API: the official create-validation.json body over real broken data.

Runs the real API app and the real runner in-process (``tests/support/stack.py``); datasets are
registered from a manifest so that files a folder import would skip (zero bytes, broken XML) reach
the task as they do on ModelArts.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from storage.db.repositories import DatasetRepository
from storage.manifest import IMAGE_CLASSIFICATION, OBJECT_DETECTION, sample_id
from storage.uris import parse_uri
from storage.voc import parse_voc
from tests.conftest import EXAMPLES
from tests.operators.test_validation import (
    encoded,
    photo,
    png_bomb,
    real_format,
    voc_base,
    with_objects,
    with_orientation,
)
from tests.support.stack import Stack, in_process_stack

IN, OUT = "data-in", "data-out"
KEPT, MODIFIED, DELETED = 0, 1, 2


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    with in_process_stack(tmp_path) as s:
        s.store.ensure_bucket(IN)
        s.store.ensure_bucket(OUT)
        yield s


def register(stack: Stack, name: str, files: dict[str, bytes], lines: list[dict[str, Any]]) -> dict:
    """Upload ``files`` under ``{name}/`` and register the dataset from a manifest listing ``lines``."""
    for rel, data in files.items():
        stack.put_file(IN, f"{name}/{rel}", data)
    manifest = "".join(json.dumps(line) + "\n" for line in lines).encode()
    stack.put_file(IN, f"{name}/input.manifest", manifest)
    return stack.create_dataset(name, f"/{IN}/{name}/input.manifest", work_path=f"/{OUT}/{name}/")


def uri(name: str, rel: str) -> str:
    return f"obs://{IN}/{name}/{rel}"


def read(stack: Stack, object_uri: str) -> bytes:
    ref = parse_uri(object_uri)
    return stack.store.get_bytes(ref.bucket, ref.key)


def outputs(stack: Stack, output_path: str) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """Every file under ``{output}/Data/`` (relative name → bytes) and the parsed output.manifest."""
    root = parse_uri(output_path if output_path.endswith("/") else output_path + "/")
    data_prefix = root.key + "Data/"
    files = {
        info.key[len(data_prefix) :]: stack.store.get_bytes(root.bucket, info.key)
        for info in stack.store.list(root.bucket, data_prefix)
    }
    manifest = stack.store.get_bytes(root.bucket, root.key + "output.manifest").decode()
    return files, [json.loads(line) for line in manifest.splitlines() if line.strip()]


def run_validation(stack: Stack, dataset: dict, **overrides: str) -> tuple[Any, dict[str, Any]]:
    body = stack.example(EXAMPLES / "create-validation.json", dataset, **overrides)
    assert body["template"]["operator_params"][0]["params"]["image_max_width"] == "1920"
    task = stack.run_task(body)
    (version,) = stack.versions(task["task_id"])
    assert version.status == 2, version.error_msg
    results = {r.origin_source: r for r in stack.results(version.id)}
    return version, results


def check_counters(version: Any, results: dict[str, Any]) -> None:
    props = [r.result_property for r in results.values()]
    assert version.origin_sample_count == len(results)
    assert version.unmodified_sample_count == props.count(KEPT)
    assert version.modified_sample_count == props.count(MODIFIED)
    assert version.deleted_sample_count == props.count(DELETED)
    assert version.origin_sample_count == (
        version.unmodified_sample_count + version.modified_sample_count + version.deleted_sample_count
    )
    assert version.add_sample_count == 0


def record(result: Any) -> dict[str, Any]:
    """The MetaValidation evidence of one result record."""
    (found,) = [e for e in result.result_description if e["operator"] == "MetaValidation"]
    return found


def test_classification_dataset_validated_into_v0010(stack: Stack) -> None:
    base = photo(256)
    w, h = base.size
    big = photo(1024).resize((2400, 1500), Image.Resampling.BICUBIC)
    good_jpg = encoded(base, "JPEG", quality=90)
    files = {
        "cat/good.jpg": good_jpg,
        "cat/good.png": encoded(base, "PNG"),
        "cat/grey.jpg": encoded(base.convert("L"), "JPEG"),
        "cat/rgba.png": encoded(base.convert("RGBA"), "PNG"),
        "cat/png_named.jpg": encoded(base, "PNG"),
        "cat/anim.gif": encoded(base, "GIF"),
        "dog/big.jpg": encoded(big, "JPEG", quality=90),
        "dog/rotated.jpg": with_orientation(base, 6),
        "dog/cmyk.jpg": encoded(base.convert("CMYK"), "JPEG"),
        "dog/truncated.jpg": good_jpg[: len(good_jpg) // 2],
        "dog/empty.jpg": b"",
        "dog/notes.jpg": b"not an image at all\n" * 10,
        "dog/bomb.png": png_bomb(),
    }
    lines = [
        {"source": uri("cls", rel), "annotation": [{"type": IMAGE_CLASSIFICATION, "name": rel.split("/")[0]}]}
        for rel in files
    ]
    dataset = register(stack, "cls", files, lines)
    assert dataset["total_sample_count"] == len(files)

    version, results = run_validation(stack, dataset)
    check_counters(version, results)
    expected = {  # source → (result, rules fired, output name)
        "cat/good.jpg": (KEPT, [], "cat/good.jpg"),
        "cat/good.png": (KEPT, [], "cat/good.png"),
        "cat/grey.jpg": (MODIFIED, ["not_rgb"], "cat/grey_checked.jpg"),
        "cat/rgba.png": (MODIFIED, ["not_rgb"], "cat/rgba_checked.png"),
        "cat/png_named.jpg": (MODIFIED, ["extension_mismatch"], "cat/png_named_checked.png"),
        "cat/anim.gif": (MODIFIED, ["not_rgb", "unsupported_format"], "cat/anim_checked.jpg"),
        "dog/big.jpg": (MODIFIED, ["too_large"], "dog/big_checked.jpg"),
        "dog/rotated.jpg": (MODIFIED, ["exif_orientation"], "dog/rotated_checked.jpg"),
        "dog/cmyk.jpg": (MODIFIED, ["not_rgb"], "dog/cmyk_checked.jpg"),
        "dog/truncated.jpg": (DELETED, ["undecodable"], None),
        "dog/empty.jpg": (DELETED, ["undecodable"], None),
        "dog/notes.jpg": (DELETED, ["undecodable"], None),
        "dog/bomb.png": (DELETED, ["undecodable"], None),
    }
    assert set(results) == {uri("cls", rel) for rel in expected}
    files_out, manifest = outputs(stack, version.output_path)
    for rel, (prop, fired, out_name) in expected.items():
        result = results[uri("cls", rel)]
        assert result.sample_id == sample_id(uri("cls", rel))
        assert result.result_property == prop, rel
        evidence = record(result)
        assert [r["rule"] for r in evidence["rules"]] == fired, rel
        assert evidence["result"] == {KEPT: "kept", MODIFIED: "modified", DELETED: "deleted"}[prop]
        if prop == DELETED:
            assert result.new_source is None and evidence["rules"][0]["reason"]
        else:
            assert out_name is not None and result.new_source.endswith("/Data/" + out_name)
    reasons = {
        rel: record(results[uri("cls", rel)])["rules"][0]["reason"]
        for rel in ("dog/empty.jpg", "dog/bomb.png")
    }
    assert "empty" in reasons["dog/empty.jpg"] and "bomb" in reasons["dog/bomb.png"]

    # Data/: per-label folders, _checked names, real formats by magic bytes, 3-channel RGB
    assert set(files_out) == {out for _, _, out in expected.values() if out is not None}
    for name, data in files_out.items():
        ext = name.rsplit(".", 1)[1]
        assert real_format(data) == {"jpg": "JPEG", "png": "PNG"}[ext], name
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "RGB", name
            assert im.getexif().get(0x0112) in (None, 1)
    assert files_out["cat/good.jpg"] == files["cat/good.jpg"]  # unchanged: copied byte for byte
    assert Image.open(io.BytesIO(files_out["dog/big_checked.jpg"])).size == (
        1920,
        1200,
    )
    assert Image.open(io.BytesIO(files_out["dog/rotated_checked.jpg"])).size == (h, w)
    rotated = np.asarray(Image.open(io.BytesIO(files_out["dog/rotated_checked.jpg"]))).astype(float)
    assert np.abs(rotated - np.rot90(np.asarray(base), k=-1)).mean() < 6

    # output.manifest: one line per kept sample, labels carried, data_checked on every line
    assert len(manifest) == version.unmodified_sample_count + version.modified_sample_count
    by_source = {line["source"]: line for line in manifest}
    assert set(by_source) == {r.new_source for r in results.values() if r.new_source}
    for line in manifest:
        assert line["property"] == {"@modelarts:data_checked": True}
        label = line["source"].split("/Data/")[1].split("/")[0]
        assert line["annotation"] == [{"type": IMAGE_CLASSIFICATION, "name": label}]

    # the source data is untouched
    for rel, data in files.items():
        assert stack.store.get_bytes(IN, f"cls/{rel}") == data

    # the output became dataset version V0010 with the same samples
    with stack.sessions() as s:
        versions = {v.name: v for v in DatasetRepository(s).versions(dataset["dataset_id"])}
        s.expunge_all()
    assert set(versions) == {"V001", "V0010"}
    v10 = versions["V0010"]
    assert v10.total_sample_count == len(manifest)
    assert v10.deleted_sample_count == 4 and v10.modified_sample_count == 7
    published = [json.loads(x) for x in read(stack, v10.manifest_uri).decode().splitlines() if x.strip()]
    assert sorted(p["source"] for p in published) == sorted(by_source)
    described = stack.client.get(f"/v2/{stack.project}/datasets/{dataset['dataset_id']}").json()
    assert described["current_version_name"] == "V0010"


def test_detection_dataset_repairs_voc_files(stack: Stack) -> None:
    image, xml = voc_base()  # 486 x 500 photo and 2007_000027.xml
    big = encoded(Image.open(io.BytesIO(image)).resize((2430, 2500)), "JPEG", quality=85)
    faulty = with_objects(
        xml.replace("<width>486</width>", "<width>512</width>"),
        ("keep", 10, 10, 100, 100),
        ("thin", 50, 50, 51, 200),
        ("inverted", 300, 10, 200, 50),
        ("mostly_out", 400, 10, 600, 50),
        ("partly_out", -20, 100, 80, 200),
    )
    files = {
        "good.jpg": image,
        "good.xml": xml.encode(),
        "faulty.jpg": image,
        "faulty.xml": faulty.encode(),
        "big.jpg": big,
        "big.xml": xml.replace("486", "2430").replace("<height>500", "<height>2500").encode(),
        "broken_xml.jpg": image,
        "broken_xml.xml": xml[: len(xml) // 2].encode(),
        "no_object.jpg": image,
        "no_object.xml": (xml[: xml.index("<object>")] + "</annotation>").encode(),
        "broken_image.jpg": image[:2000],
        "broken_image.xml": xml.encode(),
    }
    # big.xml: the person box drawn at 5x on the 2430 x 2500 image
    big_xml = with_objects(files["big.xml"].decode(), ("person", 870, 505, 1745, 1755))
    files["big.xml"] = big_xml.encode()
    stems = [rel[:-4] for rel in files if rel.endswith(".jpg")]
    lines = [
        {
            "source": uri("det", f"{stem}.jpg"),
            "annotation": [
                {
                    "type": OBJECT_DETECTION,
                    "annotation-loc": uri("det", f"{stem}.xml"),
                    "annotation-format": "PASCAL VOC",
                }
            ],
        }
        for stem in stems
    ]
    dataset = register(stack, "det", files, lines)
    version, results = run_validation(stack, dataset, task_type="object_detection")
    check_counters(version, results)
    props = {stem: results[uri("det", f"{stem}.jpg")].result_property for stem in stems}
    assert props == {
        "good": KEPT,
        "faulty": MODIFIED,
        "big": MODIFIED,
        "broken_xml": MODIFIED,
        "no_object": MODIFIED,
        "broken_image": DELETED,
    }
    files_out, manifest = outputs(stack, version.output_path)
    assert set(files_out) == {
        "good.jpg",
        "good.xml",
        "faulty_checked.jpg",
        "faulty_checked.xml",
        "big_checked.jpg",
        "big_checked.xml",
        "broken_xml.jpg",
        "no_object.jpg",
    }
    assert files_out["faulty_checked.jpg"] == image  # only its label changed
    fired = [r["rule"] for r in record(results[uri("det", "faulty.jpg")])["rules"]]
    assert fired == [
        "xml_size_wrong",
        "box_degenerate",
        "box_inverted",
        "box_mostly_outside",
        "box_partly_outside",
    ]
    fixed = parse_voc(files_out["faulty_checked.xml"])
    assert (fixed.filename, fixed.width, fixed.height, fixed.depth) == ("faulty_checked.jpg", 486, 500, 3)
    assert [(b.name, b.xmin, b.ymin, b.xmax, b.ymax) for b in fixed.boxes] == [
        ("keep", 10, 10, 100, 100),
        ("partly_out", 0, 100, 80, 200),
    ]
    shrunk = parse_voc(files_out["big_checked.xml"])
    assert Image.open(io.BytesIO(files_out["big_checked.jpg"])).size == (1866, 1920)
    assert (shrunk.width, shrunk.height) == (1866, 1920)
    assert [(b.xmin, b.ymin, b.xmax, b.ymax) for b in shrunk.boxes] == [(668, 388, 1340, 1348)]
    assert parse_voc(files_out["good.xml"]).boxes[0].xmin == 174

    by_name = {line["source"].rsplit("/", 1)[1]: line for line in manifest}
    assert set(by_name) == {n for n in files_out if not n.endswith(".xml")}
    for name, line in by_name.items():
        assert line["property"] == {"@modelarts:data_checked": True}
        if name in ("broken_xml.jpg", "no_object.jpg"):
            assert "annotation" not in line or line["annotation"] == []  # XML dropped: image kept unlabelled
            continue
        (ann,) = line["annotation"]
        assert ann["type"] == OBJECT_DETECTION
        assert ann["annotation-loc"].endswith("/Data/" + name.rsplit(".", 1)[0] + ".xml")
        assert ann["annotation-format"] == "PASCAL VOC"
        assert ann["annotated-by"] == "modelarts/hard_example_algo"
    dropped = record(results[uri("det", "broken_xml.jpg")])["rules"]
    assert dropped[0]["rule"] == "xml_unreadable" and dropped[0]["action"] == "xml_dropped"
    for rel, data in files.items():
        assert stack.store.get_bytes(IN, f"det/{rel}") == data
