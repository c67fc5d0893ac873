"""Feature analysis (sys_data_analyse) on real photos: metric behaviour, flags, summaries.

Degraded copies are built from real photos by known transforms and stored as JPEG (quality 90),
the way a dataset would hold them, then go through the same path as production samples:
bytes → guarded decoder (≤ 512 px) → ``measure``.

- blurred: Gaussian, σ = 2 px at the 512 px analysis size, i.e. σ = longest side / 256 for photos
  over 512 px (4 px on a 1024 px photo) and 2 px for smaller ones — plainly soft at full size and
  still visibly soft as a thumbnail;
- dark: every channel × 0.25 (an exposure 2 stops under);
- over-exposed: every channel × 2.5, clipped at 255 (≈ 1.3 stops over).
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from operators.analysis import FeatureAnalysis, SampleMetrics
from operators.analysis.metrics import (
    ANALYSIS_SIDE,
    CLIPPED_FRACTION,
    LUMA_P50,
    LUMA_P95,
    METRICS,
    IssueThresholds,
    clarity,
    colorfulness,
    issue_scores,
    issue_verdicts,
    luma,
    saturation,
)
from operators.analysis.summary import FINE_BINS, summarize_values
from operators.decode import decode_image
from operators.errors import InvalidParamsError
from operators.registry import build, get
from tests.conftest import PHOTOS

# Not photographs, or blurred on purpose; the flag-rate claims are about real photos.
NOT_PHOTOS = {
    "mate-Elephants_3840x2160.jpg": "same picture as mate-Elephants.jpg",
    "mate-Elephants_5640x3172.jpg": "same picture as mate-Elephants.jpg",
    "mate-GreenTraditional.jpg": "logo on a white background",
    "opencv-Blender_Suzanne1.jpg": "3-D render",
    "opencv-Blender_Suzanne2.jpg": "3-D render",
    "opencv-HappyFish.jpg": "cartoon",
    "opencv-LinuxLogo.jpg": "logo",
    "opencv-WindowsLogo.jpg": "logo",
    "opencv-aloeGT.jpg": "disparity map",
    "opencv-cards.jpg": "drawing on white",
    "opencv-chessboard.jpg": "synthetic pattern",
    "opencv-detect_blob.jpg": "synthetic shapes",
    "opencv-ellipses.jpg": "synthetic shapes",
    "opencv-gradient.jpg": "synthetic gradient",
    "opencv-imageTextN.jpg": "rendered text",
    "opencv-imageTextR.jpg": "rendered text",
    "opencv-ml.jpg": "cartoon",
    "opencv-notes.jpg": "sheet music",
    "opencv-opencv-logo-white.jpg": "logo",
    "opencv-opencv-logo.jpg": "logo",
    "opencv-pca_test1.jpg": "synthetic shapes",
    "opencv-pic1.jpg": "synthetic shapes",
    "opencv-pic2.jpg": "synthetic noise",
    "opencv-pic3.jpg": "synthetic shapes",
    "opencv-pic4.jpg": "synthetic shapes",
    "opencv-pic5.jpg": "synthetic shapes",
    "opencv-pic6.jpg": "synthetic shapes",
    "opencv-tmpl.jpg": "synthetic template",
    "opencv-text_defocus.jpg": "deblurring demo, defocused on purpose",
    "opencv-text_motion.jpg": "deblurring demo, motion-blurred on purpose",
    "opencv-licenseplate_motion.jpg": "deblurring demo, motion-blurred on purpose",
}


def _photo_paths() -> list[str]:
    names = sorted(path.name for path in PHOTOS.glob("*.jpg"))
    assert len(names) >= 100, f"expected the shared photo set in {PHOTOS}"
    missing = set(NOT_PHOTOS) - set(names)
    assert not missing, f"exclusion list names files that do not exist: {missing}"
    return [name for name in names if name not in NOT_PHOTOS]


PHOTO_NAMES = _photo_paths()


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    loaded = {}
    for name in PHOTO_NAMES:
        with Image.open(PHOTOS / name) as image:
            loaded[name] = np.asarray(image.convert("RGB"))
    assert len(loaded) >= 60
    return loaded


@pytest.fixture(scope="module")
def operator() -> FeatureAnalysis:
    built = build("sys_data_analyse", {"op_list": "[]"})
    assert isinstance(built, FeatureAnalysis)
    return built


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def measure(op: FeatureAnalysis, data: bytes) -> dict[str, float]:
    record = op.analyse(data, sample_id="s", source="mem://s")
    assert record.error is None, record.error
    assert record.metrics is not None
    return dict(record.metrics)


def blurred(rgb: np.ndarray, sigma_at_analysis: float = 2.0) -> np.ndarray:
    """Gaussian blur of ``sigma_at_analysis`` px as seen at the 512 px analysis size."""
    sigma = sigma_at_analysis * max(1.0, max(rgb.shape[:2]) / ANALYSIS_SIDE)
    return cv2.GaussianBlur(rgb, (0, 0), sigma)


def scaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * factor, 0, 255).round().astype(np.uint8)


def resized_to_width(rgb: np.ndarray, width: int) -> np.ndarray:
    height = round(rgb.shape[0] * width / rgb.shape[1])
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.LANCZOS))


# --------------------------------------------------------------------------- metric behaviour


def test_blurred_copies_always_score_less_sharp(
    operator: FeatureAnalysis, photos: dict[str, np.ndarray]
) -> None:
    for name, rgb in photos.items():
        scores = [measure(operator, jpeg(rgb))["blurriness"]]
        for sigma in (1.0, 2.0, 4.0):
            scores.append(measure(operator, jpeg(blurred(rgb, sigma)))["blurriness"])
        assert all(a > b for a, b in itertools.pairwise(scores)), (name, scores)


def test_brightness_moves_the_right_way(operator: FeatureAnalysis, photos: dict[str, np.ndarray]) -> None:
    for name, rgb in photos.items():
        original = measure(operator, jpeg(rgb))["brightness"]
        darker = [measure(operator, jpeg(scaled(rgb, f)))["brightness"] for f in (0.6, 0.25)]
        brighter = [measure(operator, jpeg(scaled(rgb, f)))["brightness"] for f in (1.4, 2.5)]
        assert original > darker[0] > darker[1], (name, original, darker)
        assert original < brighter[0] < brighter[1], (name, original, brighter)
        assert darker[1] >= 0.0 and brighter[1] <= 1.0


def test_clarity_does_not_depend_on_resolution(
    operator: FeatureAnalysis, photos: dict[str, np.ndarray]
) -> None:
    """The same photo at 640, 1280 and 2560 px wide (PIL Lanczos, JPEG q90): clarity within 10 %."""
    # Without the 26 chessboard calibration shots (near-identical scenes), to keep the test short.
    names = [name for name in PHOTO_NAMES if not re.match(r"opencv-(left|right)\d", name)]
    assert len(names) >= 40
    worst = (0.0, "")
    for name in names:
        values = [
            measure(operator, jpeg(resized_to_width(photos[name], w)))["blurriness"]
            for w in (640, 1280, 2560)
        ]
        spread = (max(values) - min(values)) / max(values)
        worst = max(worst, (spread, name))
    assert worst[0] < 0.10, f"clarity varies {worst[0]:.1%} across resolutions for {worst[1]}"


def _flag_rate(
    op: FeatureAnalysis, images: dict[str, np.ndarray], issue: str | None
) -> tuple[float, list[str]]:
    """Share of images flagged with ``issue`` (any issue when None), and the names flagged."""
    flagged = []
    for name, rgb in images.items():
        issues = issue_verdicts(issue_scores(measure(op, jpeg(rgb))))
        if (issue is None and issues) or (issue is not None and issue in issues):
            flagged.append(name)
    return len(flagged) / len(images), flagged


def test_flag_rates_on_degraded_copies_and_originals(
    operator: FeatureAnalysis, photos: dict[str, np.ndarray]
) -> None:
    rate, flagged = _flag_rate(operator, photos, None)
    assert rate <= 0.10, f"{rate:.0%} of originals flagged: {flagged}"
    degraded = {
        "blurry": {name: blurred(rgb) for name, rgb in photos.items()},
        "dark": {name: scaled(rgb, 0.25) for name, rgb in photos.items()},
        "over_exposed": {name: scaled(rgb, 2.5) for name, rgb in photos.items()},
    }
    for issue, copies in degraded.items():
        rate, flagged = _flag_rate(operator, copies, issue)
        assert rate >= 0.90, f"only {rate:.0%} of {issue} copies flagged; missed {set(copies) - set(flagged)}"


def test_metric_functions_against_independent_numpy(photos: dict[str, np.ndarray]) -> None:
    rgb = photos["opencv-baboon.jpg"]
    values = rgb.astype(np.float64)
    red, green, blue = values[..., 0], values[..., 1], values[..., 2]
    rg, yb = red - green, (red + green) / 2 - blue
    expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    assert colorfulness(rgb) == pytest.approx(expected, rel=1e-6)
    high, low = values.max(axis=2), values.min(axis=2)
    expected_saturation = np.where(high > 0, (high - low) / np.maximum(high, 1), 0).mean()
    assert saturation(rgb) == pytest.approx(expected_saturation, abs=2 / 255)
    expected_luma = (values @ np.array([0.299, 0.587, 0.114])).round()
    assert np.abs(luma(rgb).astype(np.float64) - expected_luma).max() <= 1
    grey = np.full((100, 120, 3), 128, np.uint8)
    assert colorfulness(grey) == 0.0
    assert saturation(grey) == 0.0
    assert clarity(grey[..., 0]) == 0.0


def test_measure_uses_header_size_for_geometry(
    operator: FeatureAnalysis, photos: dict[str, np.ndarray]
) -> None:
    rgb = photos["mate-Dune.jpg"]
    image = decode_image(jpeg(rgb), max_side=ANALYSIS_SIDE)
    assert max(image.pixels.shape[:2]) <= 512
    values = operator.measure(image)
    assert values["resolution"] == rgb.shape[0] * rgb.shape[1]
    assert values["aspect_ratio"] == pytest.approx(rgb.shape[1] / rgb.shape[0])
    assert 0 < values["brightness"] < 1 and 0 < values["saturation"] < 1 and 0 < values["blurriness"] < 1
    assert all(type(value) is float for value in values.values())


def test_bytes_path_agrees_with_the_pixel_path(
    operator: FeatureAnalysis, photos: dict[str, np.ndarray]
) -> None:
    """analyse() decodes luma + thumbnail straight from JPEG; measure() works from RGB pixels."""
    for name in PHOTO_NAMES[::6]:
        data = jpeg(photos[name])
        from_bytes = operator.measure_bytes(data)
        from_pixels = operator.measure(decode_image(data, max_side=ANALYSIS_SIDE, resize=False))
        assert from_bytes.keys() == from_pixels.keys()
        for key in ("resolution", "aspect_ratio"):
            assert from_bytes[key] == from_pixels[key]
        for key in ("brightness", "blurriness", LUMA_P50, LUMA_P95):
            assert from_bytes[key] == pytest.approx(from_pixels[key], abs=0.01), (name, key)
        assert from_bytes["saturation"] == pytest.approx(from_pixels["saturation"], abs=0.03), name
        assert from_bytes["colorfulness"] == pytest.approx(from_pixels["colorfulness"], rel=0.1, abs=2), name
        png = operator.measure_bytes(_png(photos[name]))  # not a JPEG: planes come from the pixels
        assert png["blurriness"] == pytest.approx(from_pixels["blurriness"], abs=0.03), name


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


# --------------------------------------------------------------------------- params and selection


def test_registered_under_the_modelarts_name() -> None:
    assert get("sys_data_analyse") is FeatureAnalysis
    assert FeatureAnalysis.template_id == "sys_data_analyse"


def test_server_added_params_are_accepted() -> None:
    op = build(
        "sys_data_analyse",
        {
            "op_list": "[]",
            "task_type": "image_classification",
            "manifest_path": "s3://bucket/out/ds-1/annotation/V001/V001.manifest",
            "file_path": "s3://bucket/out/ds-1/annotation/evaluation/V001",
            "is_normed": "false",
        },
    )
    assert isinstance(op, FeatureAnalysis)
    assert op.metrics == METRICS


@pytest.mark.parametrize("raw", ['["brightness", "sharpness"]', "[brightness,colour]", ["clarity"]])
def test_unknown_metric_keys_are_refused_with_the_valid_list(raw: Any) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        build("sys_data_analyse", {"op_list": raw})
    message = str(caught.value)
    assert "op_list" in message
    for key in METRICS:
        assert key in message


def test_op_list_selects_metrics_and_flags(photos: dict[str, np.ndarray]) -> None:
    data = jpeg(scaled(blurred(photos["opencv-home.jpg"]), 0.25))  # dark and blurry
    only_brightness = build("sys_data_analyse", {"op_list": '["brightness"]'})
    assert isinstance(only_brightness, FeatureAnalysis)
    values = measure(only_brightness, data)
    assert set(values) == {"brightness", LUMA_P50, LUMA_P95, CLIPPED_FRACTION}
    result = only_brightness.summarize([SampleMetrics("a", "obs://b/a.jpg", values)])
    assert list(result["metrics"]) == ["brightness"]
    assert result["outliers"][0]["issues"] == ["dark"]  # blurry needs the blurriness metric

    both = build("sys_data_analyse", {"op_list": "[blurriness, brightness]"})
    assert isinstance(both, FeatureAnalysis)
    assert both.metrics == ("brightness", "blurriness")  # result order, not request order
    assert both.summarize([both.analyse(data, sample_id="a", source="a")])["outliers"][0]["issues"] == [
        "dark",
        "blurry",
    ]

    geometry = build("sys_data_analyse", {"op_list": "resolution,aspect_ratio"})
    assert isinstance(geometry, FeatureAnalysis)
    values = measure(geometry, data)
    assert set(values) == {"resolution", "aspect_ratio"}
    assert geometry.summarize([SampleMetrics("a", "a", values)])["outliers"] == []


# --------------------------------------------------------------------------- summary


def _plain_json(value: Any) -> None:
    """Only dict/list/str/int/float/bool/None, all floats finite."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            _plain_json(item)
    elif isinstance(value, list):
        for item in value:
            _plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), (type(value), value)
        if type(value) is float:
            assert np.isfinite(value)


def _check_against_numpy(summary: dict[str, Any], values: np.ndarray, *, log_scale: bool) -> None:
    stats, histogram = summary["stats"], summary["histogram"]
    assert stats["count"] == values.size
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(values.std(), rel=1e-9)
    assert stats["min"] == values.min() and stats["max"] == values.max()
    low, high = values.min(), values.max()
    for key, q in (("p5", 5), ("p25", 25), ("median", 50), ("p75", 75), ("p95", 95)):
        exact = np.percentile(values, q)
        if log_scale:
            one_bin = (high / low) ** (1 / FINE_BINS)
            assert exact / one_bin <= stats[key] <= exact * one_bin, (key, stats[key], exact)
        else:
            assert abs(stats[key] - exact) <= (high - low) / FINE_BINS, (key, stats[key], exact)
    edges = np.asarray(histogram["bins"])
    counts = np.asarray(histogram["counts"])
    assert len(edges) == len(counts) + 1 and np.all(np.diff(edges) > 0)
    assert edges[0] == low and edges[-1] == high
    assert counts.sum() == values.size
    assert np.array_equal(counts, np.histogram(values, bins=edges)[0])


def test_summary_matches_numpy_on_random_values() -> None:
    rng = np.random.default_rng(3)
    normal = rng.normal(0.45, 0.12, 5001)
    _check_against_numpy(summarize_values(normal), normal, log_scale=False)
    areas = np.round(rng.lognormal(13, 1.5, 3000))
    _check_against_numpy(summarize_values(areas, log_scale=True), areas, log_scale=True)
    repeated = np.array([307200.0] * 40 + [786432.0] * 10)
    summary = summarize_values(repeated, log_scale=True)["stats"]
    assert summary["median"] == 307200.0 and summary["p95"] == 786432.0  # bins of equal values are exact
    constant = summarize_values([0.5] * 7)
    assert constant["stats"]["p5"] == constant["stats"]["p95"] == 0.5
    assert constant["histogram"] == {"bins": [0.5, 0.5], "counts": [7]}
    assert summarize_values([])["stats"]["count"] == 0


@pytest.fixture(scope="module")
def dataset_result(operator: FeatureAnalysis, photos: dict[str, np.ndarray]) -> Iterator[tuple[dict, list]]:
    records = []
    for index, name in enumerate(PHOTO_NAMES[:40]):
        rgb = photos[name]
        data = jpeg(rgb)
        if index % 10 == 3:
            data = jpeg(scaled(rgb, 0.25))
        records.append(operator.analyse(data, sample_id=f"id{index}", source=f"obs://bucket/images/{name}"))
    good = PHOTOS.joinpath(PHOTO_NAMES[0]).read_bytes()
    records.append(
        operator.analyse(good[: len(good) // 2], sample_id="cut", source="obs://bucket/images/cut.jpg")
    )
    records.append(
        operator.analyse(b"not an image", sample_id="txt", source="obs://bucket/images/readme.jpg")
    )
    yield operator.summarize(records), records


def test_dataset_result_shape_and_values(dataset_result: tuple[dict, list]) -> None:
    result, records = dataset_result
    _plain_json(result)
    json.dumps(result, allow_nan=False)
    assert result["sample_count"] == 42 and result["analysed_count"] == 40
    assert list(result["metrics"]) == list(METRICS)
    for name, summary in result["metrics"].items():
        column = np.array([record.metrics[name] for record in records if record.metrics is not None])
        _check_against_numpy(summary, column, log_scale=name == "resolution")


def test_corrupt_samples_are_failed_entries(dataset_result: tuple[dict, list]) -> None:
    result, _ = dataset_result
    failed = {entry["sample_id"]: entry for entry in result["failed"]}
    assert set(failed) == {"cut", "txt"}
    assert failed["cut"]["source"] == "obs://bucket/images/cut.jpg"
    assert "truncated" in failed["cut"]["reason"]
    assert "not a recognised image" in failed["txt"]["reason"]


def test_outliers_list_the_flagged_samples_with_scores(dataset_result: tuple[dict, list]) -> None:
    result, _ = dataset_result
    dark_ids = {f"id{index}" for index in range(40) if index % 10 == 3}
    flagged = {entry["sample_id"]: entry for entry in result["outliers"]}
    assert dark_ids <= set(flagged)
    assert len(flagged) <= len(dark_ids) + 4  # ≤ 10 % of the 36 untouched photos
    for sample_id in dark_ids:
        entry = flagged[sample_id]
        assert "dark" in entry["issues"]
        assert entry["scores"]["dark"] >= 0.5
        assert set(entry["scores"]) == {"dark", "over_exposed", "blurry"}
        assert entry["source"].startswith("obs://bucket/images/")
    assert result["issue_counts"]["dark"] >= len(dark_ids)
    assert result["thresholds"] == {"dark": 0.5, "over_exposed": 0.5, "blurry": 0.5}


def test_thresholds_change_without_remeasuring(
    operator: FeatureAnalysis, dataset_result: tuple[dict, list]
) -> None:
    _, records = dataset_result
    strict = FeatureAnalysis(
        operator.params, thresholds=IssueThresholds(dark=1.01, over_exposed=1.01, blurry=1.01)
    )
    assert strict.summarize(records)["outliers"] == []
    lenient = FeatureAnalysis(operator.params, thresholds=IssueThresholds(blurry=0.0))
    assert len(lenient.summarize(records)["outliers"]) == 40
