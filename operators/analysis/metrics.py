"""Per-image feature metrics and issue scores: pure numpy/OpenCV functions.

Three layers, kept apart so that thresholds change without re-measuring (the cleanvision
``image_property`` pattern): raw values (``measure_pixels``) → scores in [0, 1], higher = worse
(``issue_scores``) → verdicts against thresholds (``issue_verdicts``).

All pixel metrics work on the ≤ ``ANALYSIS_SIDE`` px copy the decoder produces, so they cost the same
for a 640 px and a 6000 px photo, and the clarity score does not depend on the file's resolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

ANALYSIS_SIDE = 512
"""Longest side (px) of the copy that pixel metrics are measured on."""

REBLUR_SIGMA = 1.0
"""σ (px, at analysis size) of the Gaussian whose removed gradient energy defines clarity."""

CLIP_LEVEL = 250
"""A pixel whose brightest channel reaches this value counts as clipped (blown highlight)."""

METRICS: tuple[str, ...] = (
    "resolution",
    "aspect_ratio",
    "brightness",
    "saturation",
    "blurriness",
    "colorfulness",
)
"""Metric keys accepted in ``op_list``, in result order."""

ISSUES: tuple[str, ...] = ("dark", "over_exposed", "blurry")

# Auxiliary raw values the issue scores need; measured with the metric that owns them.
LUMA_P50 = "luma_p50"
LUMA_P95 = "luma_p95"
CLIPPED_FRACTION = "clipped_fraction"

_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float64)


# --------------------------------------------------------------------------- raw values


def resolution(width: int, height: int) -> float:
    """Image area in pixels (the ModelArts "Resolution" feature), from the full-size header."""
    return float(width) * float(height)


def aspect_ratio(width: int, height: int) -> float:
    """Width divided by height of the full-size image (1.0 square, > 1 landscape)."""
    return float(width) / float(height)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma (0.299 R + 0.587 G + 0.114 B) as uint8, the perceived-brightness channel."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def luma_histogram(grey: np.ndarray) -> np.ndarray:
    """256-bin histogram of a uint8 image (percentiles from counts, no sorting)."""
    return cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()


def histogram_mean(hist: np.ndarray) -> float:
    """Mean level of a 256-bin histogram, scaled to 0–1."""
    total = float(hist.sum())
    if total <= 0:
        return 0.0
    return float(np.dot(hist, np.arange(256, dtype=np.float64)) / total / 255.0)


def histogram_percentile(hist: np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0–100) level of a 256-bin histogram, scaled to 0–1 (lower level)."""
    cumulative = np.cumsum(hist, dtype=np.float64)
    total = cumulative[-1]
    if total <= 0:
        return 0.0
    level = int(np.searchsorted(cumulative, total * q / 100.0, side="left"))
    return min(level, 255) / 255.0


def brightness(rgb: np.ndarray) -> float:
    """Mean BT.601 luma in 0–1 (0 black, 1 white)."""
    return histogram_mean(luma_histogram(luma(rgb)))


def luma_stats(grey: np.ndarray) -> tuple[float, float, float]:
    """(mean, median, 95th percentile) of a uint8 luma plane, in 0–1; percentiles from a histogram."""
    hist = luma_histogram(grey)
    cumulative = np.cumsum(hist)
    total = float(cumulative[-1])
    if total <= 0:
        return 0.0, 0.0, 0.0
    p50, p95 = np.searchsorted(cumulative, (total * 0.5, total * 0.95), side="left")
    return float(cv2.mean(grey)[0]) / 255.0, min(int(p50), 255) / 255.0, min(int(p95), 255) / 255.0


def saturation(rgb: np.ndarray) -> float:
    """Mean HSV saturation (max − min) / max in 0–1; 0 for grey images."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    return float(cv2.mean(cv2.extractChannel(hsv, 1))[0]) / 255.0


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler–Süsstrunk colourfulness on the 0–255 scale.

    rg = R − G, yb = (R + G)/2 − B; M = √(σ_rg² + σ_yb²) + 0.3·√(μ_rg² + μ_yb²). 0 for grey
    images; their paper calls ≈ 33 "moderately", ≈ 59 "quite" and ≥ 109 "extremely" colourful.
    """
    pixels = np.ascontiguousarray(rgb)
    red, green, blue = cv2.split(pixels)
    rg = cv2.subtract(red, green, dtype=cv2.CV_16S)
    red_green = cv2.add(red, green, dtype=cv2.CV_16S)
    yb2 = cv2.subtract(red_green, cv2.add(blue, blue, dtype=cv2.CV_16S), dtype=cv2.CV_16S)
    mean_rg, std_rg = cv2.meanStdDev(rg)
    mean_yb2, std_yb2 = cv2.meanStdDev(yb2)  # 2·yb keeps integers exact; halve below
    sigma = float(np.hypot(std_rg[0, 0], std_yb2[0, 0] / 2.0))
    mu = float(np.hypot(mean_rg[0, 0], mean_yb2[0, 0] / 2.0))
    return sigma + 0.3 * mu


def clipped_fraction(rgb: np.ndarray) -> float:
    """Fraction of pixels whose brightest channel is ≥ ``CLIP_LEVEL`` (blown highlights)."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    return _fraction_at_least(cv2.extractChannel(hsv, 2), CLIP_LEVEL)


def to_analysis_size(image: np.ndarray, side: int = ANALYSIS_SIDE) -> np.ndarray:
    """Downscale (bilinear) so the longest side is ≤ ``side``; smaller images are left alone."""
    height, width = image.shape[:2]
    if max(height, width) <= side:
        return image
    ratio = side / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def clarity(grey: np.ndarray, sigma: float = REBLUR_SIGMA) -> float:
    """Re-blur sharpness in 0–1, higher = sharper.

    The share of Sobel gradient energy that a Gaussian blur of ``sigma`` px removes from the grey
    image at ≤ ``ANALYSIS_SIDE`` px: a sharp image has much of its energy in fine detail and loses
    it, an already blurred one has little left to lose. Being a ratio, it ignores contrast and
    exposure; measured at a fixed analysis size, it does not depend on the file's resolution
    (unlike the variance of the Laplacian). A flat image (no gradient at all) scores 0.
    """
    small = to_analysis_size(grey)
    if small.ndim != 2 or min(small.shape) < 3:
        return 0.0
    if small.dtype != np.uint8:
        small = np.clip(small, 0, 255).astype(np.uint8)
    ksize = 2 * math.ceil(3 * sigma) + 1
    # Energies skip a margin as wide as the filters reach: there, results depend on how the border
    # is extended, and frames or letterbox bars would add edges that are not in the picture.
    margin = ksize // 2 + 1
    if min(small.shape) <= 4 * margin:
        margin = 0
    inner = (slice(margin, small.shape[0] - margin), slice(margin, small.shape[1] - margin))
    gx, gy = cv2.spatialGradient(small)  # 3×3 Sobel, int16
    energy = cv2.norm(gx[inner], cv2.NORM_L2SQR) + cv2.norm(gy[inner], cv2.NORM_L2SQR)
    if energy <= 1e-3 * small.size:  # below quantisation noise: no detail to judge
        return 0.0
    # Blurring the gradients gives the gradients of the blurred image (both filters are linear);
    # rounding them to integers moves the ratio by < 0.002 on photos.
    blurred_x = cv2.GaussianBlur(gx, (ksize, ksize), sigma)
    blurred_y = cv2.GaussianBlur(gy, (ksize, ksize), sigma)
    remaining = cv2.norm(blurred_x[inner], cv2.NORM_L2SQR) + cv2.norm(blurred_y[inner], cv2.NORM_L2SQR)
    return float(min(1.0, max(0.0, 1.0 - remaining / energy)))


def _fraction_at_least(plane: np.ndarray, level: int) -> float:
    if plane.size == 0:
        return 0.0
    return float(cv2.countNonZero(cv2.inRange(plane, level, 255))) / plane.size


COLOUR_SAMPLE_SIDE = 160
"""Colour statistics use a point sample (every k-th pixel each way) at most this many px long."""


def colour_sample(rgb: np.ndarray, side: int = COLOUR_SAMPLE_SIDE) -> np.ndarray:
    """Every k-th pixel in each direction (nearest neighbour, no averaging), longest side ≤ ``side``.

    Means and spreads of per-pixel colour values need pixels, not resolution; a point sample keeps
    their distribution (averaging would shrink the spread colourfulness measures).
    """
    height, width = rgb.shape[:2]
    step = math.ceil(max(height, width) / side)
    if step <= 1:
        return np.ascontiguousarray(rgb)
    size = (max(1, width // step), max(1, height // step))
    return cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_NEAREST)


def measure_pixels(
    rgb: np.ndarray, width: int, height: int, metrics: Iterable[str] = METRICS
) -> dict[str, float]:
    """Raw values of the selected ``metrics`` for one image, plus the inputs of their issue scores.

    ``rgb`` is an HxWx3 uint8 copy of any size (the decoder's ≤ 2 × ``ANALYSIS_SIDE`` px reduction
    is cheapest); brightness and clarity use its luma at ≤ ``ANALYSIS_SIDE`` px. ``width``/``height``
    are the full-size dimensions. ``brightness`` brings ``luma_p50``/``luma_p95``/``clipped_fraction``
    (the dark and over-exposed inputs); ``blurriness`` is itself the blurry input. Saturation,
    colourfulness and the clipped fraction use ``colour_sample`` (≤ 160 px point sample).
    """
    wanted = set(metrics)
    unknown = wanted - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; valid: {', '.join(METRICS)}")
    values: dict[str, float] = {}
    if "resolution" in wanted:
        values["resolution"] = resolution(width, height)
    if "aspect_ratio" in wanted:
        values["aspect_ratio"] = aspect_ratio(width, height)
    pixel_metrics = wanted & {"brightness", "saturation", "blurriness", "colorfulness"}
    if not pixel_metrics:
        return values
    if wanted & {"brightness", "blurriness"}:
        grey = to_analysis_size(luma(rgb))  # resizing one grey plane is 3× cheaper than RGB
        if "brightness" in wanted:
            values["brightness"], values[LUMA_P50], values[LUMA_P95] = luma_stats(grey)
        if "blurriness" in wanted:
            values["blurriness"] = clarity(grey)
    if wanted & {"brightness", "saturation", "colorfulness"}:
        sample = colour_sample(rgb)
        if wanted & {"brightness", "saturation"}:
            hsv = cv2.cvtColor(sample, cv2.COLOR_RGB2HSV)
            if "saturation" in wanted:
                values["saturation"] = float(cv2.mean(hsv)[1]) / 255.0
            if "brightness" in wanted:  # V = brightest channel
                clipped = cv2.inRange(hsv, (0, 0, CLIP_LEVEL), (255, 255, 255))
                values[CLIPPED_FRACTION] = cv2.countNonZero(clipped) / max(1, clipped.size)
        if "colorfulness" in wanted:
            values["colorfulness"] = colorfulness(sample)
    return {key: float(value) for key, value in values.items()}


# --------------------------------------------------------------------------- scores


def _ramp(value: float, zero_at: float, one_at: float) -> float:
    """Linear 0→1 between ``zero_at`` and ``one_at`` (either direction), clamped."""
    t = (value - zero_at) / (one_at - zero_at)
    return float(min(1.0, max(0.0, t)))


def dark_score(luma_p95: float) -> float:
    """0–1, 1 = dark: even the brightest 5 % of pixels are dim. 0.5 ⇔ 95th-percentile luma 0.30."""
    return _ramp(luma_p95, 0.45, 0.15)


def over_exposed_score(luma_p50: float, clipped: float) -> float:
    """0–1, 1 = over-exposed: a bright image (median luma) with blown highlights (clipped share).

    Geometric mean of ramp(median luma 0.45 → 0.75) and ramp(clipped share 0 → 0.40); both are needed,
    so light but unclipped scenes (pale wood, fog) and small specular highlights do not count.
    """
    bright = _ramp(luma_p50, 0.45, 0.75)
    blown = _ramp(clipped, 0.0, 0.40)
    return float(np.sqrt(bright * blown))


def blurry_score(clarity_value: float) -> float:
    """0–1, 1 = blurry. 0.5 ⇔ clarity 0.25 (σ = 1 px re-blur removes only a quarter of the energy)."""
    return _ramp(clarity_value, 0.40, 0.10)


@dataclass(frozen=True)
class IssueThresholds:
    """A sample has an issue when its score is ≥ the threshold."""

    dark: float = 0.5
    over_exposed: float = 0.5
    blurry: float = 0.5

    def for_issue(self, issue: str) -> float:
        return float(getattr(self, issue))


DEFAULT_THRESHOLDS = IssueThresholds()


def issue_scores(raw: Mapping[str, float]) -> dict[str, float]:
    """Scores for every issue whose raw inputs are present in ``raw``."""
    scores: dict[str, float] = {}
    if LUMA_P95 in raw:
        scores["dark"] = dark_score(raw[LUMA_P95])
    if LUMA_P50 in raw and CLIPPED_FRACTION in raw:
        scores["over_exposed"] = over_exposed_score(raw[LUMA_P50], raw[CLIPPED_FRACTION])
    if "blurriness" in raw:
        scores["blurry"] = blurry_score(raw["blurriness"])
    return scores


def issue_verdicts(
    scores: Mapping[str, float], thresholds: IssueThresholds = DEFAULT_THRESHOLDS
) -> list[str]:
    """The issues (in ``ISSUES`` order) whose score reaches its threshold."""
    return [issue for issue in ISSUES if issue in scores and scores[issue] >= thresholds.for_issue(issue)]
