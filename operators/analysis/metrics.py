"""Per-image feature metrics and issue scores: pure numpy/OpenCV functions.

Three layers, kept apart so that thresholds change without re-measuring (the cleanvision
``image_property`` pattern): raw values (``measure_planes`` / ``measure_pixels``) → scores in
[0, 1], higher = worse (``issue_scores``) → verdicts against thresholds (``issue_verdicts``).

Pixel metrics work on fixed-size planes (see :class:`operators.decode.ImagePlanes`): brightness and
clarity on the luma at ≤ ``ANALYSIS_SIDE`` px, colour statistics on an area-averaged thumbnail of
≤ ``THUMBNAIL_SIDE`` px. They cost the same for a 640 px and a 6000 px photo and do not depend on
the file's resolution; resolution and aspect ratio come from the full size.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from operators.decode import area_thumbnail, shrink_bilinear

ANALYSIS_SIDE = 512
"""Longest side (px) of the luma plane that brightness and clarity are measured on."""

THUMBNAIL_SIDE = 80
"""Longest side (px) of the area-averaged thumbnail that colour statistics are measured on: colour
statistics need many blocks, not fine detail, and a fixed size keeps them comparable across
resolutions."""

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


def brightness(rgb: np.ndarray) -> float:
    """Mean BT.601 luma in 0–1 (0 black, 1 white)."""
    return luma_stats(luma(rgb))[0]


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
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)  # value = brightest channel
    clipped = cv2.inRange(hsv, (0, 0, CLIP_LEVEL), (255, 255, 255))
    return cv2.countNonZero(clipped) / max(1, clipped.size)


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
    gx, gy, blurred_x, blurred_y = _scratch(small.shape, 4)
    cv2.spatialGradient(small, dx=gx, dy=gy)  # 3×3 Sobel, int16
    energy = cv2.norm(gx[inner], cv2.NORM_L2SQR) + cv2.norm(gy[inner], cv2.NORM_L2SQR)
    if energy <= 1e-3 * small.size:  # below quantisation noise: no detail to judge
        return 0.0
    # Blurring the gradients gives the gradients of the blurred image (both filters are linear);
    # rounding them to integers moves the ratio by < 0.002 on photos.
    cv2.GaussianBlur(gx, (ksize, ksize), sigma, dst=blurred_x)
    cv2.GaussianBlur(gy, (ksize, ksize), sigma, dst=blurred_y)
    remaining = cv2.norm(blurred_x[inner], cv2.NORM_L2SQR) + cv2.norm(blurred_y[inner], cv2.NORM_L2SQR)
    return float(min(1.0, max(0.0, 1.0 - remaining / energy)))


_SCRATCH = threading.local()


def _scratch(shape: tuple[int, ...], count: int) -> list[np.ndarray]:
    """``count`` int16 work arrays of ``shape``, reused per thread.

    Fresh 400 KB arrays for every image cost a page fault per 4 KB (the allocator hands large blocks
    back to the kernel): 15 % of the CPU time of a 640×480 analysis.
    """
    size = int(np.prod(shape))
    pool: np.ndarray | None = getattr(_SCRATCH, "pool", None)
    if pool is None or pool.shape[1] < size or pool.shape[0] < count:
        pool = np.empty((max(count, 4), max(size, ANALYSIS_SIDE * ANALYSIS_SIDE)), dtype=np.int16)
        _SCRATCH.pool = pool
    return [pool[index, :size].reshape(shape) for index in range(count)]


def measure_pixels(
    rgb: np.ndarray, width: int, height: int, metrics: Iterable[str] = METRICS
) -> dict[str, float]:
    """:func:`measure_planes` for an RGB copy of any size (e.g. :func:`operators.decode.decode_image`)."""
    full = (width, height)
    return measure_planes(
        shrink_bilinear(luma(rgb), ANALYSIS_SIDE, full),
        area_thumbnail(rgb, THUMBNAIL_SIDE, full),
        width,
        height,
        metrics,
    )


def measure_planes(
    luma_plane: np.ndarray,
    thumbnail: np.ndarray,
    width: int,
    height: int,
    metrics: Iterable[str] = METRICS,
) -> dict[str, float]:
    """Raw values of the selected ``metrics`` for one image, plus the inputs of their issue scores.

    ``luma_plane``: uint8 BT.601 luma, longest side ≤ ``ANALYSIS_SIDE`` (brightness, clarity).
    ``thumbnail``: area-averaged RGB, longest side ≤ ``THUMBNAIL_SIDE`` (saturation, colourfulness,
    clipped highlights). ``width``/``height``: the full size (resolution, aspect ratio).
    ``brightness`` brings ``luma_p50``/``luma_p95``/``clipped_fraction`` (the dark and over-exposed
    inputs); ``blurriness`` is itself the blurry input.
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
    if "brightness" in wanted:
        values["brightness"], values[LUMA_P50], values[LUMA_P95] = luma_stats(luma_plane)
    if "blurriness" in wanted:
        values["blurriness"] = clarity(luma_plane)
    if wanted & {"brightness", "saturation"}:
        hsv = cv2.cvtColor(np.ascontiguousarray(thumbnail), cv2.COLOR_RGB2HSV)
        if "saturation" in wanted:
            values["saturation"] = float(cv2.mean(hsv)[1]) / 255.0
        if "brightness" in wanted:  # HSV value = the brightest channel
            clipped = cv2.inRange(hsv, (0, 0, CLIP_LEVEL), (255, 255, 255))
            values[CLIPPED_FRACTION] = cv2.countNonZero(clipped) / max(1, clipped.size)
    if "colorfulness" in wanted:
        values["colorfulness"] = colorfulness(thumbnail)
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
