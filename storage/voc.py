"""PASCAL VOC XML (modelarts-api.md §5.2): a small, lossless model of detection label files.

Objects with a ``<bndbox>`` become ``VocBox`` (float corners, what the operators handle); every other
object becomes ``VocShape`` holding its shape element (``polygon``, ``polyline``, ``point``, ``line``,
``circle``, ``dashed``) verbatim, or ``None`` when it has no shape. Unmodelled children (``pose``,
``occluded``, ``confidence``, ``properties``, ``part``, ``source``, ``segmented`` ...) are kept as
``XmlNode`` trees in ``extra``, so parse → dump → parse gives an equal model.

Untrusted input: DTDs are refused before parsing (no entity expansion, no external entities), the
document size is capped, and every failure is a ``VocError``.
"""

from __future__ import annotations

import codecs
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from storage.errors import StorageError

MAX_VOC_BYTES = 8 * 1024 * 1024
SHAPE_TAGS = ("polygon", "polyline", "point", "line", "circle", "dashed")
"""Non-rectangle shape elements (ModelArts label-shape enum); ``bndbox`` is modelled as ``VocBox``."""

_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
_OBJECT_FIELDS = ("name", "difficult", "truncated")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class VocError(StorageError):
    """A PASCAL VOC document that cannot be read (bad XML, DTD, wrong root, bad number)."""


@dataclass(frozen=True)
class XmlNode:
    """An element kept verbatim: tag, stripped text, attributes and children (tails are dropped)."""

    tag: str
    text: str = ""
    children: tuple[XmlNode, ...] = ()
    attrib: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_element(cls, element: ET.Element) -> XmlNode:
        return cls(
            tag=element.tag,
            text=(element.text or "").strip(),
            children=tuple(cls.from_element(child) for child in element),
            attrib=tuple(element.attrib.items()),
        )

    def to_element(self) -> ET.Element:
        element = ET.Element(self.tag, dict(self.attrib))
        if self.text:
            element.text = self.text
        element.extend(child.to_element() for child in self.children)
        return element

    def find_text(self, tag: str) -> str | None:
        """Text of the first child named ``tag``, or None."""
        for child in self.children:
            if child.tag == tag:
                return child.text
        return None


@dataclass(frozen=True)
class VocBox:
    """An ``<object>`` with a rectangle ``<bndbox>`` (pixel corners as written, not clipped)."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False
    extra: tuple[XmlNode, ...] = ()

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin


@dataclass(frozen=True)
class VocShape:
    """An ``<object>`` without a ``<bndbox>``: its shape element verbatim, or None when it has none."""

    name: str
    shape: XmlNode | None
    difficult: bool = False
    truncated: bool = False
    extra: tuple[XmlNode, ...] = ()

    @property
    def kind(self) -> str | None:
        """The shape tag (``polygon``, ``point``, ...) or None."""
        return self.shape.tag if self.shape is not None else None


VocObject = VocBox | VocShape


@dataclass
class VocAnnotation:
    """One VOC file. ``width``/``height``/``depth`` are None when absent or empty."""

    filename: str
    width: int | None = None
    height: int | None = None
    depth: int | None = None
    objects: list[VocObject] = field(default_factory=list)
    folder: str | None = None
    extra: tuple[XmlNode, ...] = ()

    @property
    def boxes(self) -> list[VocBox]:
        """The rectangle objects, in document order."""
        return [obj for obj in self.objects if isinstance(obj, VocBox)]

    @property
    def labels(self) -> list[str]:
        """Object names in document order, without repeats (all shapes)."""
        return list(dict.fromkeys(obj.name for obj in self.objects))


def _decode(data: bytes) -> str:
    """Decode by BOM, else by the XML declaration's encoding, else UTF-8."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding = name
            break
    else:
        match = _DECL_ENCODING.match(data[:512])
        if match:
            encoding = match.group(1).decode("ascii")
    try:
        return data.decode(encoding)
    except LookupError as exc:
        raise VocError(f"unknown XML encoding {encoding!r}") from exc
    except UnicodeDecodeError as exc:
        raise VocError(f"XML is not valid {encoding}: {exc.reason} at byte {exc.start}") from exc


def _parse_bool(text: str | None, what: str) -> bool:
    value = (text or "0").strip().lower()
    if value in ("0", "false", ""):
        return False
    if value in ("1", "true"):
        return True
    raise VocError(f"{what} must be 0 or 1, not {text!r}")


def _parse_float(text: str | None, what: str) -> float:
    try:
        value = float((text or "").strip())
    except ValueError as exc:
        raise VocError(f"{what} must be a number, not {text!r}") from exc
    if not math.isfinite(value):
        raise VocError(f"{what} must be finite, not {text!r}")
    return value


def _parse_size(text: str | None, what: str) -> int | None:
    if text is None or not text.strip():
        return None
    value = _parse_float(text, what)
    if not value.is_integer() or value < 0:
        raise VocError(f"{what} must be a non-negative integer, not {text!r}")
    return int(value)


def _parse_object(node: XmlNode, index: int) -> VocObject:
    where = f"object {index + 1}"
    name = node.find_text("name")
    if name is None:
        raise VocError(f"{where} has no <name>")
    difficult = _parse_bool(node.find_text("difficult"), f"{where} <difficult>")
    truncated = _parse_bool(node.find_text("truncated"), f"{where} <truncated>")
    box = next((c for c in node.children if c.tag == "bndbox"), None)
    shape = box if box is not None else next((c for c in node.children if c.tag in SHAPE_TAGS), None)
    extra = tuple(c for c in node.children if c.tag not in _OBJECT_FIELDS and c is not shape)
    if box is not None:
        coords = [_parse_float(box.find_text(tag), f"{where} <bndbox><{tag}>") for tag in _BOX_TAGS]
        return VocBox(name, *coords, difficult=difficult, truncated=truncated, extra=extra)
    return VocShape(name, shape, difficult=difficult, truncated=truncated, extra=extra)


def parse_voc(data: bytes, max_bytes: int = MAX_VOC_BYTES) -> VocAnnotation:
    """Parse a VOC document; ``VocError`` for anything unreadable or unsafe (DTD/entity declarations)."""
    if len(data) > max_bytes:
        raise VocError(f"VOC file is {len(data)} bytes; the limit is {max_bytes}")
    text = _decode(data)
    if _DTD.search(text):
        raise VocError("DOCTYPE/ENTITY declarations are not allowed in VOC files")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise VocError(f"invalid XML: {exc}") from exc
    if root.tag != "annotation":
        raise VocError(f"root element must be <annotation>, not <{root.tag}>")
    tree = XmlNode.from_element(root)
    size = next((c for c in tree.children if c.tag == "size"), None)
    dims = [
        _parse_size(size.find_text(tag) if size is not None else None, f"<size><{tag}>")
        for tag in ("width", "height", "depth")
    ]
    objects = [_parse_object(c, i) for i, c in enumerate(c for c in tree.children if c.tag == "object")]
    known = ("folder", "filename", "size", "object")
    return VocAnnotation(
        filename=tree.find_text("filename") or "",
        width=dims[0],
        height=dims[1],
        depth=dims[2],
        objects=objects,
        folder=tree.find_text("folder"),
        extra=tuple(c for c in tree.children if c.tag not in known),
    )


def _number(value: float) -> str:
    """Integral values as integers (``174``, not ``174.0``), others as the shortest exact float."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _sub(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def _object_element(obj: VocObject) -> ET.Element:
    element = ET.Element("object")
    _sub(element, "name", obj.name)
    element.extend(node.to_element() for node in obj.extra)
    _sub(element, "truncated", str(int(obj.truncated)))
    _sub(element, "difficult", str(int(obj.difficult)))
    if isinstance(obj, VocBox):
        box = ET.SubElement(element, "bndbox")
        for tag in _BOX_TAGS:
            _sub(box, tag, _number(getattr(obj, tag)))
    elif obj.shape is not None:
        element.append(obj.shape.to_element())
    return element


def dump_voc(ann: VocAnnotation) -> bytes:
    """Serialise as indented UTF-8 XML; ``parse_voc(dump_voc(a)) == a``."""
    root = ET.Element("annotation")
    if ann.folder is not None:
        _sub(root, "folder", ann.folder)
    _sub(root, "filename", ann.filename)
    extra = list(ann.extra)
    # keep the conventional order: folder, filename, source..., size, segmented, objects
    head = [n for n in extra if n.tag not in ("segmented",)]
    tail = [n for n in extra if n.tag == "segmented"]
    root.extend(node.to_element() for node in head)
    size = ET.SubElement(root, "size")
    for tag in ("width", "height", "depth"):
        value = getattr(ann, tag)
        _sub(size, tag, "" if value is None else str(value))
    root.extend(node.to_element() for node in tail)
    root.extend(_object_element(obj) for obj in ann.objects)
    ET.indent(root, space="    ")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"
