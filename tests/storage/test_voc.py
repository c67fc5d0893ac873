"""PASCAL VOC parsing and writing: every fixture round-trips, shapes stay apart, hostile XML is refused."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from storage.errors import StorageError
from storage.voc import VocAnnotation, VocBox, VocError, VocShape, XmlNode, dump_voc, parse_voc
from tests.conftest import FIXTURES

VOC_FILES = sorted((FIXTURES / "voc").glob("*.xml"))


def _voc(name: str) -> VocAnnotation:
    return parse_voc((FIXTURES / "voc" / name).read_bytes())


def test_fixtures_are_there() -> None:
    assert len(VOC_FILES) == 7


@pytest.mark.parametrize("path", VOC_FILES, ids=[p.name for p in VOC_FILES])
def test_every_fixture_round_trips(path: Path) -> None:
    ann = parse_voc(path.read_bytes())
    raw = ET.fromstring(path.read_bytes())
    assert len(ann.objects) == len(raw.findall("object"))
    assert [o.name for o in ann.objects] == [o.findtext("name") for o in raw.findall("object")]
    dumped = dump_voc(ann)
    assert parse_voc(dumped) == ann
    assert dump_voc(parse_voc(dumped)) == dumped
    assert ET.fromstring(dumped).tag == "annotation"


def test_boxes_and_size() -> None:
    ann = _voc("test.xml")
    assert (ann.filename, ann.folder, ann.width, ann.height, ann.depth) == ("test", "tests", 512, 512, 1)
    assert ann.boxes == ann.objects
    person, face = ann.boxes
    assert (person.name, person.xmin, person.ymin, person.xmax, person.ymax) == ("person", 60, 40, 430, 504)
    assert person.difficult and not person.truncated
    assert (face.width, face.height) == (337, 363)
    assert ann.labels == ["person", "face"]
    assert [n.tag for n in ann.extra] == ["path", "source", "segmented"]


def test_shapes_other_than_boxes_are_kept_apart() -> None:
    ann = _voc("000000115967_1556247179208.xml")
    kinds = Counter("bndbox" if isinstance(o, VocBox) else o.kind for o in ann.objects)
    assert kinds == {"polygon": 2, "dashed": 2, "line": 1, "bndbox": 2, "circle": 1, "point": 3}
    polygon = ann.objects[0]
    assert isinstance(polygon, VocShape)
    assert polygon.shape is not None and len(polygon.shape.children) == 42
    assert (polygon.shape.find_text("x21"), polygon.shape.find_text("y21")) == ("1", "413")
    assert polygon.extra == (XmlNode("pose", "0"), XmlNode("confidence", "0.8"))
    circle = next(o for o in ann.objects if isinstance(o, VocShape) and o.kind == "circle")
    assert circle.difficult and circle.shape is not None and circle.shape.find_text("r") == "5"
    assert [b.name for b in ann.boxes] == ["trafficlight", "trafficlight"]
    assert _voc("polyline.xml").objects[2].kind == "polyline"  # type: ignore[union-attr]


def test_parts_and_label_properties_survive() -> None:
    person = _voc("2007_000027.xml").objects[0]
    assert isinstance(person, VocBox)
    parts = [n for n in person.extra if n.tag == "part"]
    assert [p.find_text("name") for p in parts] == ["head", "hand", "foot", "foot"]

    ann = _voc("labelProperties.xml")
    props = next(n for n in ann.objects[0].extra if n.tag == "properties")
    assert [c.tag for c in props.children] == ["color", "属性", "property", "property", "property"]
    assert props.children[3].find_text("value") == "blue"
    assert "<属性>绿色</属性>".encode() in dump_voc(ann)


def test_object_without_shape_and_missing_size() -> None:
    ann = parse_voc(
        b"<annotation><filename>a.jpg</filename><size><width>10</width><height></height></size>"
        b"<object><name>cat</name><pose>Left</pose></object></annotation>"
    )
    assert (ann.width, ann.height, ann.depth) == (10, None, None)
    assert ann.objects == [VocShape("cat", None, extra=(XmlNode("pose", "Left"),))]
    assert ann.boxes == []
    assert parse_voc(dump_voc(ann)) == ann


def test_numbers_are_written_back_exactly() -> None:
    ann = VocAnnotation(
        "a.jpg", 100, 50, 3, [VocBox("cat", 1.5, 2, 99.25, 49.0, truncated=True), VocBox("dog", 0, 0, 1, 1)]
    )
    dumped = dump_voc(ann)
    assert b"<xmin>1.5</xmin>" in dumped and b"<ymax>49</ymax>" in dumped
    assert b"<truncated>1</truncated>" in dumped
    assert parse_voc(dumped) == ann


def test_edited_box_is_written() -> None:
    ann = _voc("000000023361_1556180702612.xml")
    box = ann.boxes[0]
    assert ann.width is not None
    flipped = dataclasses.replace(box, xmin=ann.width - box.xmax, xmax=ann.width - box.xmin)
    ann.objects[0] = flipped
    again = parse_voc(dump_voc(ann))
    assert again.boxes[0] == flipped
    assert (again.boxes[0].xmin, again.boxes[0].xmax) == (222, 281)


def test_utf16_with_bom_is_read() -> None:
    text = '<?xml version="1.0" encoding="UTF-16"?><annotation><filename>猫.jpg</filename></annotation>'
    assert parse_voc(text.encode("utf-16")).filename == "猫.jpg"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>&lol3;</filename></annotation>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<annotation><filename>&x;</filename></annotation>"""
BOX = b"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>%s</xmax><ymax>5</ymax></bndbox>"


def _with_object(inner: bytes) -> bytes:
    return b"<annotation><filename>a</filename><object><name>a</name>" + inner + b"</object></annotation>"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (BILLION_LAUGHS, "DOCTYPE"),
        (XXE, "DOCTYPE"),
        (b'<!doctype annotation SYSTEM "http://x/a.dtd"><annotation/>', "DOCTYPE"),
        (b"<annotation><!ENTITY x 'y'></annotation>", "DOCTYPE"),
        (BILLION_LAUGHS.decode().encode("utf-16"), "DOCTYPE"),
        (b"<annotation><filename>&x;</filename></annotation>", "invalid XML"),
        (b"", "invalid XML"),
        (b"not xml at all", "invalid XML"),
        (b"<annotation><filename>a</annotation>", "invalid XML"),
        (b"<html><body/></html>", "root element"),
        (b'<?xml version="1.0" encoding="no-such-codec"?><annotation/>', "encoding"),
        (b'<?xml version="1.0" encoding="utf-8"?><annotation>\xff</annotation>', "utf-8"),
        (b"<annotation><size><width>wide</width></size></annotation>", "number"),
        (b"<annotation><size><width>-3</width></size></annotation>", "integer"),
        (b"<annotation><size><width>1.5</width></size></annotation>", "integer"),
        (_with_object(BOX % b"abc"), "number"),
        (_with_object(BOX % b"nan"), "finite"),
        (_with_object(BOX % b"inf"), "finite"),
        (_with_object(b"<bndbox><xmin>1</xmin></bndbox>"), "ymin"),
        (_with_object(b"<difficult>2</difficult>"), "difficult"),
        (b"<annotation><object><pose>x</pose></object></annotation>", "name"),
    ],
)
def test_bad_or_hostile_xml_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(VocError, match=message):
        parse_voc(data)


def test_size_limit_and_error_kind() -> None:
    assert issubclass(VocError, StorageError)
    with pytest.raises(VocError, match="limit"):
        parse_voc(b"<annotation>" + b" " * 100 + b"</annotation>", max_bytes=50)
