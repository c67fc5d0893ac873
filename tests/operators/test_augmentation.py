"""The sys_data_augmentation operators on real photos: contract, geometry of boxes, pixel semantics."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from operators import registry
from operators.augmentation import functional as F
from operators.augmentation import supported_augmentations
from operators.augmentation.boxes import fit_boxes
from operators.decode import decode_image
from operators.errors import InvalidParamsError
from operators.sample import BBox, Detection, Outcome, Sample
from tests.conftest import PHOTOS
from workers.samples import detection_xml, to_detection

LADYBIRD = PHOTOS / "mate-LadyBird.jpg"
MEADOW = PHOTOS / "mate-GreenMeadow.jpg"

# Every supported operator with its defaults, plus the variants whose code paths differ.
CASES: list[tuple[str, dict[str, str]]] = [
    *[(name, {}) for name in sorted(supported_augmentations())],
    *[("AddNoise", {"noise_type": t}) for t in ("Laplace", "Poisson", "Impulse", "SaltAndPepper")],
    ("AddNoise", {"noise_type": "Poisson", "poisson_mode": "shot"}),
    ("AddNoise", {"noise_type": "Gauss", "scale": "12", "per_channel": "True"}),
    ("Blur", {"blur_type": "Average"}),
    ("Crop", {"keep_size": "True"}),
    ("CutOut", {"fill_mode": "gaussian", "nb_iterations": "3"}),
    ("Flip", {"lr_ud": "ud"}),
    *[("LightContrast", {"func": f}) for f in ("sigmoid", "log", "linear")],
    ("Padding", {"px_top": "3", "px_right": "0", "px_bottom": "5", "px_left": "2"}),
    ("Padding", {"px_top": "8", "px_left": "8", "keep_size": "True"}),
    ("Resize", {"width": "40", "height": "30"}),
    ("Scale", {"scaleXY": "Y"}),
    ("Shear", {"shearXY": "Y"}),
    ("Translate", {"translateXY": "Y"}),
    *[("Weather", {"weather_mode": m}) for m in ("Fog", "Snow", "Clouds")],
]

GEOMETRIC = {"Crop", "Flip", "Padding", "Resize", "Rotate", "Scale", "Shear", "Translate"}
IDENTITY_ON_GREY = {"Grayscale", "Saturation"}  # a grey image has no colour to remove or turn


def case_id(case: tuple[str, dict[str, str]]) -> str:
    name, params = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())


def test_cases_cover_every_registered_augmentation() -> None:
    assert {name for name, _ in CASES} == set(supported_augmentations())
    assert len(supported_augmentations()) == 19
    assert {name for name, cls in supported_augmentations().items() if cls.moves_pixels} == GEOMETRIC


# --- inputs ----------------------------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def thumbnail(path: Any = LADYBIRD, side: int = 64) -> np.ndarray:
    return decode_image(path.read_bytes(), max_side=side).pixels


def grey_origin() -> np.ndarray:
    """A photo stored as 8-bit greyscale, as the decoder hands it over (RGB, R = G = B)."""
    with Image.open(LADYBIRD) as im:
        grey = im.convert("L").resize((64, 40))
    return decode_image(encoded(grey)).pixels


def rgba_origin() -> np.ndarray:
    """A photo with a transparent left half, composited on white by the decoder."""
    with Image.open(MEADOW) as im:
        rgba = im.convert("RGBA").resize((60, 48))
    alpha = np.full((48, 60), 255, np.uint8)
    alpha[:, :30] = 0
    rgba.putalpha(Image.fromarray(alpha))
    return decode_image(encoded(rgba)).pixels


INPUTS = {"photo": thumbnail, "grey": grey_origin, "rgba": rgba_origin}


def make_sample(pixels: np.ndarray, boxes: list[BBox] | None = None, name: str = "pic.jpg") -> Sample:
    detection = (
        None if boxes is None else Detection(boxes=list(boxes), size=(pixels.shape[1], pixels.shape[0], 3))
    )
    return Sample(
        sample_id="0123456789abcdef" * 2,
        source=f"obs://bucket/in/cat/{name}",
        name=name,
        label_dir="cat/",
        format="JPEG" if name.endswith(".jpg") else "PNG",
        pixels=pixels,
        labels=["cat"],
        detection=detection,
    )


def boxes_for(pixels: np.ndarray) -> list[BBox]:
    h, w = pixels.shape[:2]
    return [
        BBox("ladybird", round(0.3 * w), round(0.3 * h), round(0.7 * w), round(0.8 * h)),
        BBox("leaf", round(0.05 * w), round(0.1 * h), round(0.45 * w), round(0.5 * h), difficult=True),
    ]


def apply(name: str, params: dict[str, str], sample: Sample, seed: int = 11) -> Outcome:
    op = registry.build(name, params)
    return op.apply(sample, np.random.default_rng(np.random.SeedSequence([seed, 42, 0])))


def expected_size(name: str, params: dict[str, str], w: int, h: int) -> tuple[int, int] | None:
    """(width, height) the operator must produce, or None where only an upper bound holds (Crop)."""
    if name == "Resize":
        return int(params.get("width", 224)), int(params.get("height", 224))
    if name == "Padding" and params.get("keep_size") != "True":
        px = {k: int(params.get(f"px_{k}", 1)) for k in ("top", "right", "bottom", "left")}
        return w + px["left"] + px["right"], h + px["top"] + px["bottom"]
    if name == "Crop" and params.get("keep_size") != "True":
        return None
    return w, h


# --- the contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(INPUTS))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_operator_contract(case: tuple[str, dict[str, str]], kind: str) -> None:
    name, params = case
    pixels = INPUTS[kind]()
    before = pixels.copy()
    h, w = pixels.shape[:2]
    sample = make_sample(pixels, boxes_for(pixels) if kind == "photo" else None)
    outcome = apply(name, params, sample)

    # the original is kept, untouched
    assert outcome.sample is sample
    assert np.array_equal(sample.pixels, before) and not sample.pixels_changed and not sample.changed
    if kind == "grey" and name in IDENTITY_ON_GREY:
        assert outcome.added == []
        assert sample.evidence[-1]["added"] is False and "unchanged" in sample.evidence[-1]["reason"]
        return
    assert len(outcome.added) == 1, sample.evidence
    added = outcome.added[0]

    # pixels: HxWx3 uint8, contiguous, read-only (safe to share), sized by the operator's rule
    assert added.pixels.dtype == np.uint8 and added.pixels.ndim == 3 and added.pixels.shape[2] == 3
    assert added.pixels.flags.c_contiguous and not added.pixels.flags.writeable
    size = expected_size(name, params, w, h)
    if size is None:
        assert added.size != (w, h) and 1 <= added.size[0] <= w and 1 <= added.size[1] <= h
    else:
        assert added.size == size
    assert added.pixels.shape != pixels.shape or not np.array_equal(added.pixels, pixels)

    # labels and identity carried; a new file name; changed pixels to encode
    assert added.labels == ["cat"] and added.label_dir == "cat/"
    assert added.name == f"pic_{name}.jpg" and added.format == "JPEG"
    assert added.parent_id == sample.sample_id and added.pixels_changed and added.data is None

    # evidence: operator, its params, the seed and the draws, JSON-ready
    (evidence,) = added.evidence
    assert evidence["operator"] == name and evidence["seed"] == [11, 42, 0]
    assert set(evidence) >= {"params", "draws", "source_name"}
    json.dumps(evidence)
    for key, value in params.items():
        if key in evidence["params"]:
            assert str(evidence["params"][key]).lower() == value.lower() or float(
                evidence["params"][key]
            ) == float(value)

    # detection: boxes inside the image, whole pixels, not degenerate; untouched by pixel-only operators
    if sample.detection is not None:
        det = added.detection
        assert (det is not None and det.changed) or name not in GEOMETRIC
        if name not in GEOMETRIC:  # same boxes, in a detection object of its own
            assert det is not sample.detection and det.boxes == sample.detection.boxes
        assert det is not None and 1 <= len(det.boxes) <= 2
        for box in det.boxes:
            assert 0 <= box.xmin < box.xmax <= added.size[0] and 0 <= box.ymin < box.ymax <= added.size[1]
            assert box.width >= 2 and box.height >= 2
            assert all(float(v).is_integer() for v in (box.xmin, box.ymin, box.xmax, box.ymax))
        assert {b.name for b in det.boxes} <= {"ladybird", "leaf"}
        assert all(b.difficult == (b.name == "leaf") for b in det.boxes)

    # deterministic for the same seed
    again = apply(name, params, make_sample(pixels, boxes_for(pixels) if kind == "photo" else None))
    assert np.array_equal(again.added[0].pixels, added.pixels)
    assert again.added[0].evidence == added.evidence
    if added.detection is not None:
        assert again.added[0].detection.boxes == added.detection.boxes


def test_chained_copies_keep_the_whole_recipe() -> None:
    pixels, marker = marked_photo()
    original = make_sample(pixels, [marker])
    (flipped,) = apply("Flip", {}, original).added
    flipped.sample_id = "f" * 32  # as the worker does for added samples
    (turned,) = apply("Rotate", {"angle_min": "90", "angle_max": "90"}, flipped).added
    assert turned.name == "pic_Flip_Rotate.jpg"
    assert [e["operator"] for e in turned.evidence] == ["Flip", "Rotate"]
    assert turned.evidence[1]["source_name"] == "pic_Flip.jpg"
    assert [e["operator"] for e in original.evidence] == []  # the original's record is its own
    # flip (x → 200 − x) then a clockwise quarter turn about (100, 75): (x, y) → (175 − y, x − 25)
    b = turned.detection.boxes[0]
    assert (b.xmin, b.ymin, b.xmax, b.ymax) == (175 - 70, 120 - 25, 175 - 30, 160 - 25)


def test_switched_off_operator_passes_samples_through() -> None:
    sample = make_sample(thumbnail())
    outcome = apply("Flip", {"Flip": "0"}, sample)
    assert outcome.sample is sample and outcome.added == [] and sample.evidence == []
    assert len(apply("Flip", {"Flip": "1"}, make_sample(thumbnail())).added) == 1
    with pytest.raises(InvalidParamsError):
        registry.build("Flip", {"Flip": "maybe"})


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("Crop", {"crop_percent_max": "0.6"}),
        ("Flip", {"lr_ud": "diagonal"}),
        ("Flip", {"flip_p": "2"}),
        ("Resize", {"width": "0"}),
        ("Rotate", {"angle_min": "ninety"}),
        ("Shear", {"shear_max": "89.9"}),
        ("Weather", {"weather_mode": "Hail"}),
        ("LightContrast", {"func": "exp"}),
        ("Blur", {"blur_type": "Median"}),
        ("Padding", {"px_top": "-1"}),
        ("Grayscale", {"alpha": "0.5"}),
    ],
)
def test_bad_params_are_refused(name: str, params: dict[str, str]) -> None:
    with pytest.raises(InvalidParamsError):
        registry.build(name, params)


@pytest.mark.parametrize("name", ["StyleGAN", "CycleGAN"])
def test_gan_operators_are_refused_with_a_clear_message(name: str) -> None:
    cls = registry.get(name)
    assert cls.template_id == "sys_data_augmentation" and not cls.supported
    for params in ({}, {"resolution": "256", "predict": "False"}):
        with pytest.raises(InvalidParamsError, match=f"{name} .*not supported"):
            registry.build(name, params)


# --- geometry: boxes follow the object -------------------------------------------------------------

MAGENTA = np.array([255, 0, 255], np.uint8)
MARKER = (40, 30, 80, 70)  # xmin, ymin, xmax, ymax in a 200x150 image


def marked_photo() -> tuple[np.ndarray, BBox]:
    """A 200x150 photo with a magenta square; the photo itself has no magenta-like pixel."""
    base = cv2.resize(thumbnail(LADYBIRD, 320), (200, 150), interpolation=cv2.INTER_AREA)
    assert not marker_mask(base).any()
    x0, y0, x1, y1 = MARKER
    base[y0:y1, x0:x1] = MAGENTA
    base.setflags(write=False)
    return base, BBox("marker", x0, y0, x1, y1)


def marker_mask(pixels: np.ndarray) -> np.ndarray:
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    return (r > 190) & (g < 70) & (b > 190)


def marker_bounds(pixels: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(marker_mask(pixels))
    assert xs.size > 50, "the marker left the image"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


GEOMETRY_CASES = [
    ("Flip", {"lr_ud": "lr"}),
    ("Flip", {"lr_ud": "ud"}),
    ("Rotate", {"angle_min": "30", "angle_max": "30"}),
    ("Rotate", {"angle_min": "-90", "angle_max": "-90"}),
    ("Rotate", {"angle_min": "135", "angle_max": "135"}),
    ("Shear", {"shearXY": "X", "shear_min": "25", "shear_max": "25"}),
    ("Shear", {"shearXY": "Y", "shear_min": "-20", "shear_max": "-20"}),
    ("Scale", {"scaleXY": "X", "scale_min": "1.4", "scale_max": "1.4"}),
    ("Scale", {"scaleXY": "Y", "scale_min": "0.6", "scale_max": "0.6"}),
    ("Translate", {"translateXY": "X", "translate_percent_min": "0.3", "translate_percent_max": "0.3"}),
    ("Translate", {"translateXY": "Y", "translate_percent_min": "-0.15", "translate_percent_max": "-0.15"}),
    ("Crop", {"crop_percent_min": "0.1", "crop_percent_max": "0.15"}),
    ("Crop", {"crop_percent_min": "0.1", "crop_percent_max": "0.15", "keep_size": "True"}),
    ("Padding", {"px_top": "9", "px_right": "4", "px_bottom": "0", "px_left": "13"}),
    ("Padding", {"px_top": "20", "px_left": "30", "keep_size": "True"}),
    ("Resize", {"width": "100", "height": "90"}),
]


@pytest.mark.parametrize("case", GEOMETRY_CASES, ids=case_id)
def test_box_lands_on_the_transformed_object(case: tuple[str, dict[str, str]]) -> None:
    name, params = case
    pixels, box = marked_photo()
    added = apply(name, params, make_sample(pixels, [box])).added[0]
    (moved,) = added.detection.boxes
    got = (moved.xmin, moved.ymin, moved.xmax, moved.ymax)
    found = marker_bounds(added.pixels)
    # the box holds every marker pixel (1 px of interpolation slack) and hugs it
    assert got[0] <= found[0] + 1 and got[1] <= found[1] + 1, (got, found)
    assert got[2] >= found[2] - 1 and got[3] >= found[3] - 1, (got, found)
    assert iou(got, found) > 0.85, (got, found)


def test_flips_map_the_box_onto_the_same_pixels() -> None:
    pixels, _ = marked_photo()
    region = (30, 20, 150, 110)  # a box around real photo content, not only the marker
    x0, y0, x1, y1 = region
    crop = pixels[y0:y1, x0:x1]
    for params, expected in (({"lr_ud": "lr"}, crop[:, ::-1]), ({"lr_ud": "ud"}, crop[::-1])):
        added = apply("Flip", params, make_sample(pixels, [BBox("thing", *region)])).added[0]
        b = added.detection.boxes[0]
        got = added.pixels[int(b.ymin) : int(b.ymax), int(b.xmin) : int(b.xmax)]
        assert np.array_equal(got, expected)
        assert (b.xmin, b.xmax) == ((200 - x1, 200 - x0) if params["lr_ud"] == "lr" else (x0, x1))


def test_quarter_turn_maps_the_box_onto_the_rotated_pixels() -> None:
    pixels, _ = marked_photo()
    region = (40, 30, 100, 70)
    x0, y0, x1, y1 = region
    added = apply("Rotate", {"angle_min": "90", "angle_max": "90"}, make_sample(pixels, [BBox("t", *region)]))
    out = added.added[0]
    b = out.detection.boxes[0]
    # clockwise about (100, 75): (x, y) -> (175 - y, x - 25)
    assert (b.xmin, b.ymin, b.xmax, b.ymax) == (175 - y1, x0 - 25, 175 - y0, x1 - 25)
    got = out.pixels[int(b.ymin) : int(b.ymax), int(b.xmin) : int(b.xmax)].astype(int)
    expected = np.rot90(pixels[y0:y1, x0:x1], k=-1).astype(int)
    assert np.abs(got - expected).max() <= 1


def test_box_pushed_out_of_frame_is_dropped_and_half_out_is_clipped() -> None:
    pixels, marker = marked_photo()
    inside = BBox("right", 150, 40, 190, 100)

    # 0.65·200 = 130 px right: the marker (40..80) → 170..210, 25 % outside → clipped to 170..200;
    # the right box → 280..320, entirely outside → dropped
    clip = apply("Translate", _shift(0.65), make_sample(pixels, [marker, inside])).added[0]
    (kept,) = clip.detection.boxes
    assert kept.name == "marker" and (kept.xmin, kept.xmax) == (170, 200)
    assert clip.evidence[0]["boxes"] == {"kept": 1, "clipped": 1, "dropped": 1, "other_shapes_dropped": 0}

    # 0.75·200 = 150 px: the marker → 190..230, 75 % outside → dropped; no box left → nothing added
    sample = make_sample(pixels, [marker])
    outcome = apply("Translate", _shift(0.75), sample)
    assert outcome.added == [] and outcome.sample is sample
    assert (
        sample.evidence[-1]["added"] is False and sample.evidence[-1]["reason"] == "every box left the image"
    )
    assert sample.evidence[-1]["boxes"]["dropped"] == 1


def _shift(share: float) -> dict[str, str]:
    return {"translateXY": "X", "translate_percent_min": str(share), "translate_percent_max": str(share)}


def test_rotation_that_pushes_every_box_out_drops_the_added_image() -> None:
    pixels, _ = marked_photo()
    corner = BBox("corner", 0, 0, 20, 20)  # the top-left corner turns out of the 200x150 frame
    sample = make_sample(pixels, [corner])
    assert apply("Rotate", {"angle_min": "90", "angle_max": "90"}, sample).added == []
    assert sample.evidence[-1]["operator"] == "Rotate" and sample.evidence[-1]["draws"]["angle"] == 90


def test_fit_boxes_rules() -> None:
    boxes = np.array(
        [
            [10.2, 10.6, 50.4, 40.5],  # inside: rounded half up
            [-10, 0, 30, 20],  # 25 % outside: clipped
            [-30, 0, 10, 20],  # 75 % outside: dropped
            [5, 5, 6.5, 30],  # 1.5 px wide: degenerate
            [98.8, 0, 101, 20],  # after clipping 1.2 px → rounds to 99..100: degenerate
        ]
    )
    fitted = fit_boxes(boxes, 100, 80)
    assert fitted.kept.tolist() == [0, 1]
    assert fitted.boxes.tolist() == [[10, 11, 50, 41], [0, 0, 30, 20]]
    assert (fitted.clipped, fitted.dropped) == (1, 3)


def test_other_shapes_are_dropped_when_pixels_move_and_kept_otherwise() -> None:
    voc = b"""<annotation><folder>f</folder><filename>pic.jpg</filename>
    <size><width>200</width><height>150</height><depth>3</depth></size>
    <object><name>marker</name><difficult>0</difficult><bndbox><xmin>40</xmin><ymin>30</ymin>
    <xmax>80</xmax><ymax>70</ymax></bndbox></object>
    <object><name>outline</name><polygon><x1>1</x1><y1>1</y1><x2>20</x2><y2>1</y2><x3>20</x3><y3>20</y3>
    </polygon></object></annotation>"""
    pixels, _ = marked_photo()
    detection = to_detection(voc, None)
    assert detection.other_objects == 1 and len(detection.boxes) == 1

    flipped = apply("Flip", {}, replace(make_sample(pixels), detection=detection)).added[0]
    xml = detection_xml(flipped, flipped.name).decode()
    assert "<polygon>" not in xml and "<xmin>120</xmin>" in xml and "<xmax>160</xmax>" in xml
    assert flipped.evidence[0]["boxes"]["other_shapes_dropped"] == 1

    noisy = apply("AddNoise", {"scale": "5"}, replace(make_sample(pixels), detection=detection)).added[0]
    xml = detection_xml(noisy, noisy.name).decode()
    assert "<polygon>" in xml and "<xmin>40</xmin>" in xml


def test_rotate_accepts_its_range_in_either_order() -> None:
    pixels = thumbnail()
    angles = {
        order: [
            apply("Rotate", params, make_sample(pixels), seed=s).added[0].evidence[0]["draws"]["angle"]
            for s in range(40)
        ]
        for order, params in {
            "doc": {},  # the documented defaults: angle_min 90, angle_max -90
            "swapped": {"angle_min": "-90", "angle_max": "90"},
        }.items()
    }
    assert angles["doc"] == angles["swapped"]
    assert all(-90 <= a <= 90 for a in angles["doc"])
    assert min(angles["doc"]) < -30 and max(angles["doc"]) > 30


def test_flip_probability_below_one_adds_only_when_it_flips() -> None:
    pixels = thumbnail()
    flipped = 0
    for seed in range(200):
        sample = make_sample(pixels)
        outcome = apply("Flip", {"flip_p": "0.3"}, sample, seed=seed)
        if outcome.added:
            flipped += 1
            assert outcome.added[0].evidence[0]["draws"]["flipped"] is True
        else:
            assert sample.evidence[-1]["draws"]["flipped"] is False
    assert 40 <= flipped <= 80  # Binomial(200, 0.3): mean 60, sd 6.5


# --- pixel semantics ---------------------------------------------------------------------------------


def added_of(name: str, params: dict[str, str], pixels: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    added = apply(name, params, make_sample(pixels)).added[0]
    return added.pixels, added.evidence[0]["draws"]


def laplacian_variance(pixels: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_colour_operators_follow_their_formulas() -> None:
    src = thumbnail(MEADOW, 160)
    v = src.astype(float)

    grey, _ = added_of("Grayscale", {}, src)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    assert np.abs(grey[..., 0] - (0.299 * v[..., 0] + 0.587 * v[..., 1] + 0.114 * v[..., 2])).max() <= 1

    out, draws = added_of("LightArithmetic", {}, src)
    assert np.array_equal(out, np.clip(np.floor(v * draws["mul"] + draws["add"] + 0.5), 0, 255))

    out, _ = added_of("LightContrast", {"func": "gamma", "gamma_min": "2", "gamma_max": "2"}, src)
    assert np.array_equal(out, np.clip(np.floor(255 * (v / 255) ** 2 + 0.5), 0, 255))
    out, draws = added_of("LightContrast", {"func": "sigmoid"}, src)
    expected = 255 / (1 + np.exp(draws["gain"] * (draws["cutoff"] - v / 255)))
    assert np.array_equal(out, np.floor(expected + 0.5))
    out, draws = added_of("LightContrast", {"func": "log"}, src)
    assert np.array_equal(out, np.clip(np.floor(255 * draws["gain"] * np.log2(1 + v / 255) + 0.5), 0, 255))
    out, draws = added_of("LightContrast", {"func": "linear"}, src)
    assert np.array_equal(out, np.clip(np.floor(127 + draws["alpha"] * (v - 127) + 0.5), 0, 255))

    out, _ = added_of("Saturation", {"saturation_mul_min": "0", "saturation_mul_max": "0"}, src)
    assert np.abs(out.astype(int) - out[..., :1].astype(int)).max() <= 1  # no saturation left: grey
    out, draws = added_of("Saturation", {"saturation_mul_min": "1", "saturation_mul_max": "1"}, src)
    hue_in = cv2.cvtColor(src, cv2.COLOR_RGB2HSV_FULL)[..., 0].astype(int)
    hue_out = cv2.cvtColor(out, cv2.COLOR_RGB2HSV_FULL)[..., 0].astype(int)
    saturated = cv2.cvtColor(src, cv2.COLOR_RGB2HSV_FULL)[..., 1] > 100
    turn = (hue_out - hue_in + 128) % 256 - 128
    assert abs(np.median(turn[saturated]) - draws["hue_shift"] * 256 / 360) <= 1.5


def test_histogram_equalisation_flattens_lightness() -> None:
    src = thumbnail(MEADOW, 200)
    out, _ = added_of("HistogramEqual", {}, src)

    def lightness_cdf_gap(pixels: np.ndarray) -> float:
        lightness = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)[..., 0]
        cdf = np.cumsum(np.bincount(lightness.ravel(), minlength=256)) / lightness.size
        return float(np.abs(cdf - np.arange(1, 257) / 256).max())

    assert lightness_cdf_gap(src) > 0.2
    assert lightness_cdf_gap(out) < 0.08


def test_filters_blur_and_sharpen() -> None:
    src = thumbnail(LADYBIRD, 200)
    sharpness = laplacian_variance(src)
    blurred, _ = added_of("Blur", {"sigma_min": "2", "sigma_max": "2"}, src)
    assert laplacian_variance(blurred) < 0.2 * sharpness
    boxed, draws = added_of("Blur", {"blur_type": "Average", "k_min": "5", "k_max": "5"}, src)
    assert draws == {"k": 5} and np.array_equal(
        boxed, cv2.blur(src, (5, 5), borderType=cv2.BORDER_REFLECT_101)
    )
    sharpened, _ = added_of("Sharpen", {"alpha_min": "0.5", "alpha_max": "0.5", "lightness_min": "1"}, src)
    assert laplacian_variance(sharpened) > 1.5 * sharpness

    # motion blur smears along its angle: differences along the motion shrink far more than across it
    fruits = thumbnail(PHOTOS / "opencv-fruits.jpg", 200)
    g_in = fruits.astype(float).mean(axis=2)
    shrink = {}
    for angle in ("0", "90"):
        streak, _ = added_of(
            "MotionBlur",
            {"k_min": "11", "k_max": "11", "angle_min": angle, "angle_max": angle, "direction_min": "0"}
            | {"direction_max": "0"},
            fruits,
        )
        g_out = streak.astype(float).mean(axis=2)
        shrink[angle] = [
            np.abs(np.diff(g_out, axis=a)).mean() / np.abs(np.diff(g_in, axis=a)).mean() for a in (1, 0)
        ]
    assert shrink["0"][0] < 0.65 * shrink["0"][1]  # horizontal motion: x differences shrink
    assert shrink["90"][1] < 0.65 * shrink["90"][0]  # vertical motion: y differences shrink
    kernel = F.motion_kernel(7, 0.0, 0.0)
    assert kernel.sum() == pytest.approx(1.0) and np.count_nonzero(kernel) == 7
    assert kernel[3].sum() == pytest.approx(1.0)
    assert F.motion_kernel(7, 0.0, 1.0)[3, 0] > F.motion_kernel(7, 0.0, 1.0)[3, 6]


def test_cutout_erases_one_square_and_nothing_else() -> None:
    src = thumbnail(LADYBIRD, 160)
    out, draws = added_of("CutOut", {"cval": "7", "size_min": "0.25", "size_max": "0.25"}, src)
    ((x0, y0, x1, y1),) = draws["rectangles"]
    assert np.all(out[y0:y1, x0:x1] == 7)
    mask = np.ones(src.shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    assert np.array_equal(out[mask], src[mask])
    side = round(0.25 * min(src.shape[:2]))
    assert (x1 - x0 == side or x0 == 0 or x1 == src.shape[1]) and (
        y1 - y0 == side or y0 == 0 or y1 == src.shape[0]
    )


def test_geometry_pixels() -> None:
    src = thumbnail(LADYBIRD, 120)
    h, w = src.shape[:2]
    cropped, d = added_of("Crop", {"crop_percent_min": "0.05", "crop_percent_max": "0.2"}, src)
    assert np.array_equal(cropped, src[d["top"] : h - d["bottom"], d["left"] : w - d["right"]])
    assert all(round(0.05 * h) <= d[k] <= round(0.2 * h) for k in ("top", "bottom"))
    padded, _ = added_of("Padding", {"px_top": "2", "px_right": "3", "px_bottom": "4", "px_left": "5"}, src)
    assert np.array_equal(padded[2 : 2 + h, 5 : 5 + w], src)
    assert padded[:2].max() == 0 and padded[-4:].max() == 0 and padded[:, :5].max() == 0
    assert padded[:, -3:].max() == 0
    shifted, d = added_of(
        "Translate", {"translate_percent_min": "-0.25", "translate_percent_max": "-0.1"}, src
    )
    dx = d["dx"]
    assert dx < 0 and np.array_equal(shifted[:, : w + dx], src[:, -dx:]) and shifted[:, w + dx :].max() == 0
    resized, _ = added_of("Resize", {"width": "30", "height": "50"}, src)
    assert resized.shape == (50, 30, 3)


def test_weather_changes_the_scene_the_way_its_name_says() -> None:
    src = thumbnail(MEADOW, 320)
    grey = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY).astype(float)
    fixed = {"intensity_min": "0.6", "intensity_max": "0.6"}

    def luma(name: str) -> np.ndarray:
        out, draws = added_of("Weather", {"weather_mode": name, **fixed}, src)
        assert draws["intensity"] == 0.6
        return cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(float)

    fog, clouds, snow, rain = luma("Fog"), luma("Clouds"), luma("Snow"), luma("Rain")
    assert fog.mean() > grey.mean() + 30 and fog.std() < 0.7 * grey.std()  # hazy: brighter, flatter
    assert clouds.mean() > grey.mean() + 10
    assert np.mean(snow > 235) > np.mean(grey > 235) + 0.012  # white flakes
    assert rain.mean() < grey.mean()  # a darker scene
    streaks = (rain - grey * (1 - 0.25 * 0.6)) > 20  # bright streaks over the darkened scene
    assert 0.01 < streaks.mean() < 0.3
