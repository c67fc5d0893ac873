"""MetaValidation on a catalogue of real broken files built from the photos and the VOC fixtures.

Every sample goes through the worker's own code (``build_sample`` → ``MetaValidation.apply`` →
``encode`` / ``detection_xml``), so the checks are on the bytes that would be written.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest
from PIL import Image

from operators import registry
from operators.decode import DecodeLimits
from operators.errors import InvalidParamsError
from operators.kinds import SampleOperator
from operators.params import OperatorParams
from operators.sample import BBox, Outcome, Sample
from operators.validation import MetaValidation
from operators.validation.image_rules import checked_name, fit_within, png_bit_depth
from operators.validation.voc_rules import check_box, outside_fraction, reorient_box, scale_box
from storage.manifest import IMAGE_CLASSIFICATION, OBJECT_DETECTION, ManifestSample
from storage.voc import VocBox, VocShape, parse_voc
from tests.conftest import FIXTURES, PHOTOS
from workers.fetch import Fetched
from workers.jobs.processing import Pipeline, build_operators
from workers.samples import build_sample, detection_xml, encode, manifest_line, rng_for

VOC = FIXTURES / "voc"
PHOTO = PHOTOS / "opencv-fruits.jpg"
LIMITS = DecodeLimits()

# --- building the catalogue ------------------------------------------------------------------------


def photo(side: int = 256, path: Path = PHOTO) -> Image.Image:
    """A real photo, longest side ``side``."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
        return im.copy()


def encoded(im: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@functools.cache
def png_bomb(side: int = 30_000) -> bytes:
    """A real decompression bomb: a valid 1-bit ``side`` x ``side`` PNG of zeros, ~100 KB on disk."""
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row * 1000) for _ in range(side // 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(data: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header claims ``width`` x ``height``."""
    pos = 2
    while pos + 4 <= len(data):
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return data[: pos + 5] + struct.pack(">HH", height, width) + data[pos + 9 :]
        pos += 2 + length
    raise AssertionError("no SOF marker")


def with_orientation(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(im, "JPEG", quality=92, exif=exif.tobytes())


def real_format(data: bytes) -> str:
    """The format by magic bytes, independent of PIL."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"BM"):
        return "BMP"
    if data.startswith(b"GIF8"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return "unknown"


def make_sample(
    name: str, data: bytes, xml: bytes | None = None, *, xml_error: str | None = None, detection: bool = False
) -> Sample:
    """A sample as the worker builds it: classification label ``cat``, or a VOC file beside it."""
    source = f"obs://bucket-in/data/{name}"
    if detection or xml is not None or xml_error is not None:
        xml_uri = source.rsplit(".", 1)[0] + ".xml"
        ms = ManifestSample(
            source=source, annotations=[{"type": OBJECT_DETECTION, "annotation-loc": xml_uri}]
        )
        label = Fetched(ManifestSample(source=xml_uri), xml, xml_error)
        return build_sample(ms, Fetched(ms, data), label, LIMITS, 0)
    ms = ManifestSample(source=source, annotations=[{"type": IMAGE_CLASSIFICATION, "name": "cat"}])
    return build_sample(ms, Fetched(ms, data), None, LIMITS, 0)


def validate(sample: Sample, **params: str) -> tuple[Sample | None, dict[str, Any]]:
    op = registry.build("MetaValidation", params)
    assert isinstance(op, MetaValidation)
    outcome = op.apply(sample, rng_for(1, sample.sample_id, 0))
    assert outcome.added == []
    records = [e for e in sample.evidence if e["operator"] == "MetaValidation"]
    assert len(records) == 1, sample.evidence
    return outcome.sample, records[0]


def rules(record: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in record["rules"]]


def decoded_output(sample: Sample) -> tuple[bytes, str, Image.Image]:
    """The bytes and name the worker would write, and the file reopened by PIL."""
    data, name = encode(sample)
    im = Image.open(io.BytesIO(data))
    im.load()
    return data, name, im


# --- the image catalogue -----------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    data: bytes
    result: str
    rules: list[str] = field(default_factory=list)
    out_name: str | None = None
    out_format: str | None = None
    out_size: tuple[int, int] | None = None
    reason: str | None = None
    params: dict[str, str] = field(default_factory=dict)


def image_catalogue() -> list[Case]:
    base = photo(256)  # 256 x 192
    w, h = base.size
    jpeg = encoded(base, "JPEG", quality=90)
    rgba = base.convert("RGBA")
    alpha = np.full((h, w), 255, np.uint8)
    alpha[: h // 2] = 0  # top half transparent
    rgba.putalpha(Image.fromarray(alpha))
    grey16 = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    ok, rgb48 = cv2.imencode(".png", np.asarray(base)[..., ::-1].astype(np.uint16) * 257)
    assert ok
    big = photo(1024).resize((2400, 1500), Image.Resampling.BICUBIC)
    return [
        Case("good.jpg", jpeg, "kept", out_name="good.jpg", out_format="JPEG", out_size=(w, h)),
        Case(
            "good.png", encoded(base, "PNG"), "kept", out_name="good.png", out_format="PNG", out_size=(w, h)
        ),
        Case(
            "good.bmp", encoded(base, "BMP"), "kept", out_name="good.bmp", out_format="BMP", out_size=(w, h)
        ),
        Case("truncated.jpg", jpeg[: len(jpeg) * 6 // 10], "deleted", ["undecodable"], reason="truncated"),
        Case("empty.jpg", b"", "deleted", ["undecodable"], reason="empty file"),
        Case(
            "notes.jpg",
            b"shopping list: apples, pears\n" * 20,
            "deleted",
            ["undecodable"],
            reason="not a recognised",
        ),
        Case("bomb.png", png_bomb(), "deleted", ["undecodable"], reason="decompression bomb"),
        Case("bomb.jpg", jpeg_claiming(jpeg, 30_000, 30_000), "deleted", ["undecodable"], reason="bomb"),
        Case("huge.jpg", jpeg_claiming(jpeg, 9_000, 9_000), "deleted", ["undecodable"], reason="pixel limit"),
        Case(
            "png_named.jpg",
            encoded(base, "PNG"),
            "modified",
            ["extension_mismatch"],
            "png_named_checked.png",
            "PNG",
            (w, h),
        ),
        Case(
            "bmp_named.png",
            encoded(base, "BMP"),
            "modified",
            ["extension_mismatch"],
            "bmp_named_checked.bmp",
            "BMP",
        ),
        Case(
            "grey.jpg",
            encoded(base.convert("L"), "JPEG"),
            "modified",
            ["not_rgb"],
            "grey_checked.jpg",
            "JPEG",
        ),
        Case("rgba.png", encoded(rgba, "PNG"), "modified", ["not_rgb"], "rgba_checked.png", "PNG", (w, h)),
        Case("la.png", encoded(rgba.convert("LA"), "PNG"), "modified", ["not_rgb"], "la_checked.png", "PNG"),
        Case(
            "palette.png",
            encoded(base.convert("P"), "PNG"),
            "modified",
            ["not_rgb"],
            "palette_checked.png",
            "PNG",
        ),
        Case(
            "mono.png", encoded(base.convert("1"), "PNG"), "modified", ["not_rgb"], "mono_checked.png", "PNG"
        ),
        Case(
            "cmyk.jpg",
            encoded(base.convert("CMYK"), "JPEG"),
            "modified",
            ["not_rgb"],
            "cmyk_checked.jpg",
            "JPEG",
        ),
        Case(
            "grey16.png",
            encoded(grey16, "PNG"),
            "modified",
            ["not_rgb", "bit_depth"],
            "grey16_checked.png",
            "PNG",
            (w, h),
        ),
        Case("rgb48.png", rgb48.tobytes(), "modified", ["bit_depth"], "rgb48_checked.png", "PNG", (w, h)),
        Case("pixel.jpg", encoded(Image.new("RGB", (1, 1), (200, 30, 40)), "JPEG"), "kept", [], "pixel.jpg"),
        Case(
            "anim.gif",
            encoded(base, "GIF"),
            "modified",
            ["not_rgb", "unsupported_format"],
            "anim_checked.jpg",
            "JPEG",
        ),
        Case(
            "scan.tiff", encoded(base, "TIFF"), "modified", ["unsupported_format"], "scan_checked.jpg", "JPEG"
        ),
        Case(
            "webp_named.jpg",
            encoded(base, "WEBP", quality=90),
            "modified",
            ["unsupported_format"],
            "webp_named_checked.jpg",
            "JPEG",
            (w, h),
        ),
        Case(
            "big.jpg",
            encoded(big, "JPEG", quality=90),
            "modified",
            ["too_large"],
            "big_checked.jpg",
            "JPEG",
            (1920, 1200),
            params={"image_max_width": "1920", "image_max_height": "1920"},
        ),
        Case(
            "tall.png",
            encoded(base.resize((100, 400)), "PNG"),
            "modified",
            ["too_large"],
            "tall_checked.png",
            "PNG",
            (50, 200),
            params={"image_max_height": "200"},
        ),
        Case(
            "big_unlimited.jpg", encoded(big, "JPEG"), "kept", [], "big_unlimited.jpg", "JPEG", (2400, 1500)
        ),
        Case(
            "rotated.jpg",
            with_orientation(base, 6),
            "modified",
            ["exif_orientation"],
            "rotated_checked.jpg",
            "JPEG",
            (h, w),
        ),
        Case(
            "mirrored.jpg",
            with_orientation(base, 2),
            "modified",
            ["exif_orientation"],
            "mirrored_checked.jpg",
        ),
        Case("again_checked.png", encoded(rgba, "PNG"), "modified", ["not_rgb"], "again_checked.png", "PNG"),
    ]


CATALOGUE = image_catalogue()


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_every_catalogue_file_ends_as_the_rules_say(case: Case) -> None:
    sample = make_sample(case.name, case.data)
    kept, record = validate(sample, **case.params)
    assert record["result"] == case.result
    assert rules(record) == case.rules
    if case.result == "deleted":
        assert kept is None
        assert case.reason is not None and case.reason in record["rules"][0]["reason"]
        return
    assert kept is not None
    assert kept.manifest_property == {"@modelarts:data_checked": True}
    assert kept.changed == (case.result == "modified")
    data, name, im = decoded_output(kept)
    assert name == case.out_name
    assert im.mode == "RGB"
    if case.out_format is not None:
        assert real_format(data) == case.out_format
    if case.out_size is not None:
        assert im.size == case.out_size
    if case.result == "kept":
        assert data == case.data  # unchanged files are copied byte for byte
    if real_format(data) == "PNG":
        assert png_bit_depth(data) == 8
    line = manifest_line(kept, f"obs://bucket-out/Data/cat/{name}", None)
    assert line.property["@modelarts:data_checked"] is True
    assert line.labels == ["cat"]


@pytest.mark.parametrize("case", [c for c in CATALOGUE if c.result != "deleted"], ids=lambda c: c.name)
def test_validated_output_validates_clean(case: Case) -> None:
    """Validation is idempotent: its output passes again with no rule firing and the same name."""
    kept, _ = validate(make_sample(case.name, case.data), **case.params)
    assert kept is not None
    data, name = encode(kept)
    again, record = validate(make_sample(name, data), **case.params)
    assert record == {"operator": "MetaValidation", "result": "kept", "rules": []}
    assert again is not None and encode(again) == (data, name)


def test_converted_pixels_keep_the_picture() -> None:
    """Conversions change the encoding, not the image: compare against the source photo."""
    base = np.asarray(photo(256)).astype(float)
    grey = np.asarray(photo(256).convert("L")).astype(float)
    by_name = {c.name: c for c in CATALOGUE}

    def output(name: str) -> np.ndarray:
        kept, _ = validate(make_sample(name, by_name[name].data), **by_name[name].params)
        assert kept is not None
        return np.asarray(decoded_output(kept)[2]).astype(float)

    assert np.abs(output("cmyk.jpg") - base).mean() < 6
    assert np.abs(output("rgb48.png") - base).max() <= 1
    grey16 = output("grey16.png")
    assert np.abs(grey16[..., 0] - grey).max() <= 1 and np.array_equal(grey16[..., 0], grey16[..., 2])
    rgba = output("rgba.png")
    height = rgba.shape[0]
    assert rgba[: height // 2].min() == 255  # transparent half composited on white
    assert np.abs(rgba[height // 2 :] - base[height // 2 :]).max() <= 1
    rotated = output("rotated.jpg")
    upright = np.rot90(base, k=-1)  # orientation 6: turn 90° clockwise to display
    assert rotated.shape == upright.shape and np.abs(rotated - upright).mean() < 6
    big = output("big.jpg")
    expected = np.asarray(photo(1024).resize((2400, 1500), Image.Resampling.BICUBIC).resize((1920, 1200)))
    assert np.abs(big - expected.astype(float)).mean() < 4


def test_rotated_output_has_no_orientation_left() -> None:
    kept, _ = validate(make_sample("rotated.jpg", with_orientation(photo(128), 8)))
    assert kept is not None
    _, _, im = decoded_output(kept)
    assert im.getexif().get(0x0112) in (None, 1)


def test_undecodable_fetch_error_is_deleted_with_its_reason() -> None:
    source = "obs://bucket-in/data/gone.jpg"
    ms = ManifestSample(source=source)
    sample = build_sample(ms, Fetched(ms, None, "object not found: in/data/gone.jpg"), None, LIMITS, 0)
    kept, record = validate(sample)
    assert kept is None
    assert record["rules"] == [
        {"rule": "undecodable", "action": "deleted", "reason": "object not found: in/data/gone.jpg"}
    ]


# --- VOC ----------------------------------------------------------------------------------------------


def voc_base() -> tuple[bytes, str]:
    """A real photo at the size 2007_000027.xml states (486 x 500) and that XML."""
    im = photo(1024).resize((486, 500))
    return encoded(im, "JPEG", quality=90), (VOC / "2007_000027.xml").read_text()


def with_objects(xml: str, *boxes: tuple[str, float, float, float, float]) -> str:
    """The XML with its objects replaced by these boxes."""
    head = xml[: xml.index("<object>")]
    objects = "".join(
        f"<object><name>{n}</name><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in boxes
    )
    return head + objects + "</annotation>"


def run_voc(xml: str | bytes | None, image: bytes | None = None, **params: str) -> tuple[Sample, dict, Any]:
    """Validate an image + XML pair: the kept sample, its record and the parsed output XML (or None)."""
    data = image if image is not None else voc_base()[0]
    raw = xml.encode() if isinstance(xml, str) else xml
    sample = make_sample("img.jpg", data, raw, xml_error=None if raw is not None else "label file missing")
    kept, record = validate(sample, **params)
    assert kept is not None  # the image itself is fine in every VOC case
    out = detection_xml(kept, encode(kept)[1])
    return kept, record, parse_voc(out) if out is not None else None


def shapes_only(path: Path) -> str:
    """A fixture with every ``<bndbox>`` object removed (polygons, lines, points... remain)."""
    xml = path.read_text()
    blocks = re.findall(r"<object>.*?</object>", xml, flags=re.S)
    assert any("<bndbox>" in b for b in blocks) and any("<bndbox>" not in b for b in blocks)
    for block in blocks:
        if "<bndbox>" in block:
            xml = xml.replace(block, "", 1)
    return xml


def assert_clean_again(kept: Sample, **params: str) -> None:
    """The written image + XML pass validation again untouched."""
    data, name = encode(kept)
    xml = detection_xml(kept, name)
    assert xml is not None
    again, record = validate(make_sample(name, data, xml), **params)
    assert record == {"operator": "MetaValidation", "result": "kept", "rules": []}
    assert again is not None and again.name == name


def box_list(ann: Any) -> list[tuple[str, float, float, float, float]]:
    return [(b.name, b.xmin, b.ymin, b.xmax, b.ymax) for b in ann.boxes]


def test_good_voc_pair_is_kept_unchanged() -> None:
    kept, record, ann = run_voc(voc_base()[1])
    assert record == {"operator": "MetaValidation", "result": "kept", "rules": []}
    assert kept.name == "img.jpg" and not kept.changed
    assert box_list(ann) == [("person", 174, 101, 349, 351)]
    assert (ann.width, ann.height, ann.depth) == (486, 500, 3)
    assert [n.tag for n in ann.boxes[0].extra].count("part") == 4  # unmodelled children carried
    line = manifest_line(kept, "obs://bucket-out/Data/img.jpg", "obs://bucket-out/Data/img.xml")
    assert line.annotation_loc == "obs://bucket-out/Data/img.xml"
    assert line.property == {"@modelarts:data_checked": True}


@pytest.mark.parametrize(
    ("fault", "xml", "rule"),
    [
        ("unparsable", lambda x: x[: len(x) // 2], "xml_unreadable"),
        ("not VOC", lambda x: "<html><body>hi</body></html>", "xml_unreadable"),
        ("missing", lambda x: None, "xml_unreadable"),
        ("no object", lambda x: x[: x.index("<object>")] + "</annotation>", "xml_no_object"),
        ("no bndbox", lambda x: shapes_only(VOC / "000000115967_1556247179208.xml"), "xml_no_bndbox"),
        (
            "all boxes invalid",
            lambda x: with_objects(x, ("a", 10, 10, 11, 50), ("b", 300, 10, 200, 50)),
            None,
        ),
    ],
)
def test_voc_file_dropped_image_kept_unlabelled(fault: str, xml: Any, rule: str | None) -> None:
    kept, record, ann = run_voc(xml(voc_base()[1]))
    assert ann is None  # the worker writes no XML
    assert record["result"] == "modified" and kept.changed
    assert kept.name == "img.jpg"  # the image itself is unchanged and copied as is
    assert encode(kept)[0] == voc_base()[0]
    fired = rules(record)
    assert fired[-1] == (rule or "xml_no_valid_box")
    assert record["rules"][-1]["action"] == "xml_dropped"
    if rule is None:
        assert fired == ["box_degenerate", "box_inverted", "xml_no_valid_box"]
    line = manifest_line(kept, "obs://bucket-out/Data/img.jpg", None)
    assert line.annotations == [] and line.property == {"@modelarts:data_checked": True}


def test_objects_without_bndbox_are_dropped() -> None:
    xml = (VOC / "polyline.xml").read_text()
    before = parse_voc(xml.encode())
    assert any(isinstance(o, VocShape) for o in before.objects)
    image = encoded(photo(1024).resize((640, 426)), "JPEG")
    kept, record, ann = run_voc(xml, image)
    assert rules(record)[0] == "object_without_bndbox"
    assert record["rules"][0]["count"] == sum(isinstance(o, VocShape) for o in before.objects)
    assert all(isinstance(o, VocBox) for o in ann.objects)
    assert [o.name for o in ann.objects] == [b.name for b in before.boxes if b.width >= 2 and b.height >= 2]
    assert kept.name == "img_checked.jpg" and encode(kept)[0] == image  # only the XML changed


@pytest.mark.parametrize(
    ("edit", "rule"),
    [
        (lambda x: x.replace("<width>486</width>", "<width>999</width>"), "xml_size_wrong"),
        (lambda x: x.replace("<depth>3</depth>", "<depth>1</depth>"), "xml_size_wrong"),
        (lambda x: x.replace("<width>486</width>", ""), "xml_size_missing"),
        (lambda x: x[: x.index("<size>")] + x[x.index("</size>") + 7 :], "xml_size_missing"),
    ],
)
def test_wrong_or_missing_size_is_rewritten(edit: Any, rule: str) -> None:
    kept, record, ann = run_voc(edit(voc_base()[1]))
    assert rules(record) == [rule]
    assert record["rules"][0]["to"] == [486, 500, 3]
    assert (ann.width, ann.height, ann.depth) == (486, 500, 3)
    assert box_list(ann) == [("person", 174, 101, 349, 351)]
    assert kept.name == "img_checked.jpg"


def test_boxes_follow_a_resize() -> None:
    xml = with_objects(voc_base()[1], ("person", 174, 101, 349, 351), ("dog", 9, 20, 12, 60))
    kept, record, ann = run_voc(xml, image_max_width="243")
    assert kept.size == (243, 250)
    assert rules(record) == ["too_large", "boxes_rescaled", "box_degenerate"]  # the dog: 3 px → 1 px wide
    assert (ann.width, ann.height) == (243, 250)
    assert box_list(ann) == [("person", 87, 51, 175, 176)]
    assert_clean_again(kept, image_max_width="243")


def test_box_faults_dropped_or_clipped() -> None:
    xml = with_objects(
        voc_base()[1],
        ("good", 10, 10, 100, 100),
        ("thin", 50, 50, 51.5, 200),
        ("flat", 50, 50, 200, 50),
        ("inverted", 300, 10, 200, 50),
        ("mostly_out", 400, 10, 600, 50),
        ("partly_out", -20, 100, 80, 200),
        ("corner_out", 440, 460, 500, 510),
        ("far_away", 1000, 1000, 1100, 1100),
    )
    kept, record, ann = run_voc(xml)
    by_object = {r.get("object"): r for r in record["rules"]}
    assert by_object["thin"]["rule"] == "box_degenerate"
    assert by_object["flat"]["rule"] == "box_degenerate"
    assert by_object["inverted"]["rule"] == "box_inverted"
    assert by_object["mostly_out"]["rule"] == "box_mostly_outside"
    assert by_object["mostly_out"]["outside"] == pytest.approx(114 / 200, abs=1e-4)
    assert by_object["far_away"]["rule"] == "box_mostly_outside"
    assert by_object["partly_out"] == {
        "rule": "box_partly_outside",
        "action": "clipped",
        "outside": 0.2,
        "to": [0.0, 100.0, 80.0, 200.0],
        "object": "partly_out",
        "box": [-20.0, 100.0, 80.0, 200.0],
    }
    assert by_object["corner_out"]["rule"] == "box_partly_outside"  # 46 x 40 of 60 x 50 inside
    assert by_object["corner_out"]["outside"] == pytest.approx(1 - 1840 / 3000, abs=1e-4)
    assert box_list(ann) == [
        ("good", 10, 10, 100, 100),
        ("partly_out", 0, 100, 80, 200),
        ("corner_out", 440, 460, 486, 500),
    ]
    assert kept.name == "img_checked.jpg"
    assert_clean_again(kept)


def test_labels_drawn_on_stored_pixels_follow_the_exif_rotation() -> None:
    """A labeller that ignores EXIF draws on the stored pixels; the box must land on the same object."""
    stored = np.asarray(photo(320).resize((320, 240))).copy()  # 320 x 240 stored
    stored[40:100, 200:300] = (255, 0, 0)  # a red object at x 200..300, y 40..100
    image = with_orientation(Image.fromarray(stored), 6)
    xml = with_objects(voc_base()[1], ("red", 200, 40, 300, 100))
    xml = xml.replace("<width>486</width>", "<width>320</width>").replace(
        "<height>500</height>", "<height>240</height>"
    )
    kept, record, ann = run_voc(xml, image)
    assert rules(record) == ["exif_orientation", "boxes_in_stored_orientation"]
    assert (ann.width, ann.height) == (240, 320)
    ((_, x1, y1, x2, y2),) = box_list(ann)
    pixels = kept.pixels
    assert pixels is not None
    inside = pixels[int(y1) + 3 : int(y2) - 3, int(x1) + 3 : int(x2) - 3].astype(int)
    assert (inside[..., 0] > 200).all() and (inside[..., 1] < 60).all()
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    ys, xs = np.nonzero(red)
    assert abs(xs.min() - x1) <= 2 and abs(xs.max() + 1 - x2) <= 2
    assert abs(ys.min() - y1) <= 2 and abs(ys.max() + 1 - y2) <= 2
    assert_clean_again(kept)


def test_undecodable_image_with_labels_is_deleted() -> None:
    sample = make_sample("img.jpg", b"\x00" * 100, voc_base()[1].encode())
    kept, record = validate(sample)
    assert kept is None and rules(record) == ["undecodable"]


# --- pure functions -------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reorient_box_matches_pil_exif_transpose(orientation: int) -> None:
    stored = np.zeros((60, 90), np.uint8)
    stored[10:25, 30:70] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = Image.fromarray(stored)
    im.info["exif"] = exif.tobytes()
    im.getexif()[0x0112] = orientation
    from PIL import ImageOps

    shown = np.asarray(ImageOps.exif_transpose(im))
    ys, xs = np.nonzero(shown)
    box = reorient_box(BBox("o", 30, 10, 70, 25), orientation, 90, 60)
    assert (box.xmin, box.ymin, box.xmax, box.ymax) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_fit_within_keeps_ratio_and_limits() -> None:
    assert fit_within(2400, 1500, 1920, 1920) == (1920, 1200)
    assert fit_within(1500, 2400, 1920, -1) is None
    assert fit_within(1500, 2400, -1, 1920) == (1200, 1920)
    assert fit_within(1000, 1000, 1000, 1000) is None
    assert fit_within(30_000, 1, 1920, 1920) == (1920, 1)
    for w, h in [(1999, 1333), (4001, 3), (3, 4001), (1921, 1921)]:
        new = fit_within(w, h, 1920, 1080)
        assert new is not None and new[0] <= 1920 and new[1] <= 1080
        assert abs(new[0] / new[1] - w / h) <= max(1 / new[1], 1 / new[0]) * (w / h) + 1e-9 or min(new) == 1


def test_box_rules_edges() -> None:
    assert outside_fraction(BBox("a", -50, 0, 50, 10), 100, 100) == 0.5
    kept, finding = check_box(BBox("a", -50, 0, 50, 10), 100, 100)  # exactly half: clipped, not dropped
    assert kept is not None and finding is not None and finding["rule"] == "box_partly_outside"
    kept, finding = check_box(BBox("a", 0, 0, 100, 100), 100, 100)  # edges touch the border: fine
    assert kept is not None and finding is None
    kept, finding = check_box(BBox("a", 98.5, 0, 101, 10), 100, 100)  # 40 % out, 1.5 px left after clipping
    assert kept is None and finding is not None and finding["after"] == "clipping"
    scaled = scale_box(BBox("a", 1, 1, 3, 3), 0.75, 0.75)  # 0.75..2.25 rounds to 1..2: still 1 wide
    assert (scaled.xmin, scaled.xmax) == (1, 2)


def test_checked_name() -> None:
    assert checked_name("1.jpg") == "1_checked.jpg"
    assert checked_name("a.b.PNG", "png") == "a.b_checked.png"
    assert checked_name("x_checked.jpg") == "x_checked.jpg"
    assert checked_name("noext", "jpg") == "noext_checked.jpg"


# --- params and chaining ----------------------------------------------------------------------------


def test_params_arrive_as_strings() -> None:
    op = registry.build("MetaValidation", {"image_max_width": "1920", "image_max_height": "-1"})
    assert (op.params.image_max_width, op.params.image_max_height) == (1920, -1)
    assert registry.build("MetaValidation", {}).params.image_max_width == -1
    for bad in (
        {"image_max_width": "0"},
        {"image_max_height": "-5"},
        {"image_max_width": "wide"},
        {"foo": "1"},
    ):
        with pytest.raises(InvalidParamsError):
            registry.build("MetaValidation", bad)


class _Probe(SampleOperator):
    """Records what the operator after validation sees."""

    name = "ValidationProbe"
    template_id = "sys_data_augmentation"
    Params = OperatorParams
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def apply(self, sample: Sample, rng: np.random.Generator) -> Outcome:
        type(self).seen.append((sample.name, sample.format))
        return Outcome(sample)


def test_do_validation_runs_meta_validation_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._REGISTRY, _Probe.name, _Probe)
    monkeypatch.setattr(_Probe, "seen", [])
    template = {"operator_params": [{"name": "ValidationProbe", "params": {"do_validation": "True"}}]}
    ops = build_operators(template)
    assert [op.name for op in ops] == ["MetaValidation", "ValidationProbe"]
    off = build_operators(
        {"operator_params": [{"name": "ValidationProbe", "params": {"do_validation": "False"}}]}
    )
    assert [op.name for op in off] == ["ValidationProbe"]
    explicit = build_operators(
        {
            "operator_params": [
                {"name": "MetaValidation", "params": {}},
                {"name": "ValidationProbe", "params": {}},
            ]
        }
    )
    assert [op.name for op in explicit] == ["MetaValidation", "ValidationProbe"]

    pipeline = Pipeline(ops, {}, seed=7)
    base = photo(64)
    bad = pipeline.run(make_sample("broken.jpg", b"not an image"), len(ops))
    assert bad.original is None and bad.deleted_evidence[0]["rules"][0]["rule"] == "undecodable"
    good = pipeline.run(make_sample("png_named.jpg", encoded(base, "PNG")), len(ops))
    assert good.original is not None and good.original.name == "png_named_checked.png"
    assert _Probe.seen == [("png_named_checked.png", "PNG")]  # the probe saw the validated sample only
