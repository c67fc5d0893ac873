"""Pure pixel maths of the augmentation operators: HxWx3 uint8 in, new HxWx3 uint8 out.

Nothing here keeps state or draws its own randomness: functions that need random numbers take the
``numpy.random.Generator`` the worker seeded. Inputs are never written to (the decoder hands out
read-only arrays). Noise follows imgaug's semantics in 0-255 pixel units, written from scratch:
float noise is rounded to whole grey levels, limited to ±255 and added with saturation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_BUCKETS = 1 << 16
AMBIGUOUS = np.int16(np.iinfo(np.int16).max)
"""Table entry for a 16-bit bucket that straddles a step of the CDF (resolved with a second draw)."""

NOISE_LIMIT = 255
"""imgaug clips additive noise values to ±255 before adding them to uint8 pixels."""


# --- integer noise, sampled exactly through a 16-bit inverse-CDF table ------------------------------


@dataclass(frozen=True)
class IntegerNoise:
    """A distribution over the integers ``low .. low + len(cdf) - 1``, sampled by table look-up.

    One uniform 16-bit draw picks a bucket of width 2^-16 on the CDF axis. Buckets that lie within a
    single step of the CDF give their value straight from the table; the few buckets that contain a
    step (at most one per support value) are refined with a uniform float inside the bucket, so the
    samples follow the CDF exactly (to float64 precision), not a 16-bit approximation of it.
    """

    low: int
    cdf: np.ndarray
    table: np.ndarray

    @classmethod
    def from_pmf(cls, low: int, pmf: np.ndarray) -> IntegerNoise:
        weights = np.clip(np.asarray(pmf, dtype=np.float64), 0.0, None)
        total = float(weights.sum())
        if not total > 0.0:
            raise ValueError("a noise distribution needs positive total probability")
        cdf = np.cumsum(weights / total)
        cdf[-1] = 1.0
        cdf = np.maximum.accumulate(cdf)
        edges = np.arange(_BUCKETS + 1, dtype=np.float64) / _BUCKETS
        first = np.searchsorted(cdf, edges[:-1], side="right")  # value index at the bucket's start
        below_end = np.searchsorted(cdf, edges[1:], side="left")  # CDF steps before the bucket's end
        table = (first + low).astype(np.int16)
        table[below_end > first] = AMBIGUOUS
        table.setflags(write=False)
        cdf.setflags(write=False)
        return cls(low=int(low), cdf=cdf, table=table)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """int16 samples of the given shape."""
        buckets = rng.integers(0, _BUCKETS, size=shape, dtype=np.uint16)
        values = self.table.take(buckets)
        flat = values.reshape(-1)
        ambiguous = np.flatnonzero(flat == AMBIGUOUS)
        if ambiguous.size:
            start = buckets.reshape(-1)[ambiguous].astype(np.float64)
            u = (start + rng.random(ambiguous.size)) / _BUCKETS
            u = np.minimum(u, np.nextafter((start + 1.0) / _BUCKETS, 0.0))
            flat[ambiguous] = np.searchsorted(self.cdf, u, side="right") + self.low
        return values

    @property
    def values(self) -> np.ndarray:
        return np.arange(self.low, self.low + self.cdf.size)

    @property
    def pmf(self) -> np.ndarray:
        return np.diff(self.cdf, prepend=0.0)

    def mean(self) -> float:
        return float((self.values * self.pmf).sum())

    def std(self) -> float:
        centred = self.values - self.mean()
        return float(np.sqrt((centred**2 * self.pmf).sum()))


_NOISE_VALUES = np.arange(-NOISE_LIMIT, NOISE_LIMIT + 1, dtype=np.float64)


def _rounded_continuous(cdf_at: np.ndarray) -> IntegerNoise:
    """Noise ``clip(round(X), -255, 255)`` given ``P(X <= k + 0.5)`` for k = -255 .. 254."""
    cdf = np.append(cdf_at, 1.0)
    return IntegerNoise.from_pmf(-NOISE_LIMIT, np.diff(cdf, prepend=0.0))


def _point_mass(value: float) -> IntegerNoise:
    k = int(np.clip(np.round(value), -NOISE_LIMIT, NOISE_LIMIT))
    return IntegerNoise.from_pmf(k, np.ones(1))


def gaussian_noise(loc: float, scale: float) -> IntegerNoise:
    """imgaug AdditiveGaussianNoise: ``round(N(loc, scale))`` limited to ±255 (pixel units)."""
    if scale <= 0:
        return _point_mass(loc)
    z = (_NOISE_VALUES[:-1] + 0.5 - loc) / (scale * math.sqrt(2.0))
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return _rounded_continuous(0.5 * (1.0 + erf(z)))


def laplace_noise(loc: float, scale: float) -> IntegerNoise:
    """imgaug AdditiveLaplaceNoise: ``round(Laplace(loc, b=scale))`` limited to ±255 (std = √2·scale)."""
    if scale <= 0:
        return _point_mass(loc)
    x = _NOISE_VALUES[:-1] + 0.5 - loc
    cdf = np.where(
        x < 0, 0.5 * np.exp(np.minimum(x, 0.0) / scale), 1.0 - 0.5 * np.exp(-np.maximum(x, 0.0) / scale)
    )
    return _rounded_continuous(cdf)


def signed_poisson_noise(lam: float) -> IntegerNoise:
    """imgaug AdditivePoissonNoise: ``±Poisson(lam)`` with a fair random sign, limited to ±255."""
    if lam <= 0:
        return _point_mass(0.0)
    k = np.arange(NOISE_LIMIT + 1, dtype=np.float64)
    log_pmf = k * math.log(lam) - lam - np.array([math.lgamma(v + 1.0) for v in k])
    magnitude = np.exp(log_pmf)
    magnitude[-1] += max(0.0, 1.0 - float(magnitude.sum()))  # the tail beyond 255 is clipped to 255
    pmf = np.concatenate([0.5 * magnitude[:0:-1], magnitude[:1], 0.5 * magnitude[1:]])
    return IntegerNoise.from_pmf(-NOISE_LIMIT, pmf)


def add_noise(pixels: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``clip(pixels + noise, 0, 255)``; an HxW noise map is shared by the three channels."""
    if noise.ndim == 2:
        noise = cv2.merge([noise, noise, noise])
    return cv2.add(pixels, noise, dtype=cv2.CV_8U)


def additive_noise(
    pixels: np.ndarray, noise: IntegerNoise, rng: np.random.Generator, per_channel: bool
) -> np.ndarray:
    """Draw one noise value per pixel (or per pixel and channel) and add it."""
    shape = pixels.shape if per_channel else pixels.shape[:2]
    return add_noise(pixels, noise.sample(rng, shape))


_LEVEL_BITS = 12


@dataclass(frozen=True)
class LevelNoise:
    """Signal-dependent noise: for each input grey level g a distribution over the output levels
    0..255, sampled like :class:`IntegerNoise` with one 12-bit table row per level (2 MB)."""

    cdf: np.ndarray
    table: np.ndarray

    @classmethod
    def from_pmfs(cls, pmfs: np.ndarray) -> LevelNoise:
        """``pmfs[g, j]`` = P(output j | input g)."""
        weights = np.clip(np.asarray(pmfs, dtype=np.float64), 0.0, None)
        cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
        cdf[:, -1] = 1.0
        cdf = np.maximum.accumulate(cdf, axis=1)
        buckets = 1 << _LEVEL_BITS
        edges = np.arange(buckets + 1, dtype=np.float64) / buckets
        table = np.empty((256, buckets), dtype=np.int16)
        for g in range(256):
            first = np.searchsorted(cdf[g], edges[:-1], side="right")
            below_end = np.searchsorted(cdf[g], edges[1:], side="left")
            table[g] = np.where(below_end > first, AMBIGUOUS, first)
        # rows offset by their level, so one searchsorted serves every level (row g lies in [g, g+1])
        offset = (cdf + np.arange(256)[:, None]).reshape(-1)
        for array in (offset, table):
            array.setflags(write=False)
        return cls(cdf=offset, table=table.reshape(-1))

    def sample(self, pixels: np.ndarray, rng: np.random.Generator, per_channel: bool) -> np.ndarray:
        """New uint8 pixels; one uniform per value, or per pixel shared by its channels."""
        shape = pixels.shape if per_channel else pixels.shape[:2]
        buckets = rng.integers(0, 1 << _LEVEL_BITS, size=shape, dtype=np.uint16)
        if not per_channel:
            buckets = cv2.merge([buckets] * pixels.shape[2])
        index = (pixels.astype(np.int32) << _LEVEL_BITS) | buckets
        values = self.table.take(index)
        flat = values.reshape(-1)
        ambiguous = np.flatnonzero(flat == AMBIGUOUS)
        if ambiguous.size:
            level = pixels.reshape(-1)[ambiguous].astype(np.float64)
            start = buckets.reshape(-1)[ambiguous].astype(np.float64)
            if per_channel:
                fine = rng.random(ambiguous.size)
            else:  # channels of one pixel share their uniform, refinement included
                pixel, which = np.unique(ambiguous // pixels.shape[2], return_inverse=True)
                fine = rng.random(pixel.size)[which]
            u = (start + fine) / (1 << _LEVEL_BITS)
            u = np.minimum(u, np.nextafter((start + 1.0) / (1 << _LEVEL_BITS), 0.0))
            flat[ambiguous] = (
                np.searchsorted(self.cdf, level + u, side="right") - level.astype(np.int64) * 256
            )
        return values.astype(np.uint8)


def shot_noise(photons_per_level: float) -> LevelNoise:
    """Poisson (shot) noise: a value v becomes ``round(Poisson(v · k) / k)`` (clipped to 255), so the
    noise variance is ``v / k`` grey levels²."""
    k = photons_per_level
    pmfs = np.zeros((256, 256), dtype=np.float64)
    pmfs[0, 0] = 1.0
    for g in range(1, 256):
        lam = g * k
        spread = 14.0 * math.sqrt(lam) + 20.0  # mass beyond 14 σ is below 1e-40
        lo, hi = max(0, math.floor(lam - spread)), math.ceil(lam + spread)
        counts = np.arange(lo, hi + 1, dtype=np.float64)
        # log pmf by a running sum from the first count (no per-value lgamma)
        steps = np.log(lam) - np.log(np.maximum(counts[1:], 1.0))
        log_pmf = lo * math.log(lam) - lam - math.lgamma(lo + 1.0) + np.concatenate([[0.0], np.cumsum(steps)])
        levels = np.minimum(np.round(counts / k), 255).astype(np.intp)
        pmfs[g] = np.bincount(levels, weights=np.exp(log_pmf), minlength=256)[:256]
    return LevelNoise.from_pmfs(pmfs)


def replace_elements(
    pixels: np.ndarray, p: float, rng: np.random.Generator, per_channel: bool
) -> tuple[np.ndarray, int]:
    """imgaug SaltAndPepper / ImpulseNoise: each pixel (or channel value) is replaced with probability
    ``p`` by ``round(255 · Beta(0.5, 0.5))`` (mostly near 0 or 255). Returns the image and the count.

    The Bernoulli mask is drawn as its exact equivalent: a Binomial count, then that many distinct
    positions chosen uniformly.
    """
    out = np.array(pixels, copy=True)
    flat = out.reshape(-1) if per_channel else out.reshape(-1, pixels.shape[2])
    count = int(rng.binomial(flat.shape[0], p)) if p > 0 else 0
    if count:
        where = rng.choice(flat.shape[0], size=count, replace=False)
        values = np.round(rng.beta(0.5, 0.5, size=count) * 255.0).astype(np.uint8)
        flat[where] = values if per_channel else values[:, None]
    return out, count


# --- colour and light ----------------------------------------------------------------------------

_LEVELS = np.arange(256, dtype=np.float64)


def lut_from_levels(levels: np.ndarray) -> np.ndarray:
    """A uint8 look-up table from float levels: rounded half up, clipped to 0-255."""
    return np.clip(np.floor(levels + 0.5), 0, 255).astype(np.uint8)


def apply_lut(pixels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return cv2.LUT(pixels, lut)


def linear_light_lut(mul: float, add: float) -> np.ndarray:
    """LightArithmetic: ``v · mul + add``."""
    return lut_from_levels(_LEVELS * mul + add)


def gamma_lut(gamma: float) -> np.ndarray:
    """``255 · (v/255)^γ``."""
    return lut_from_levels(255.0 * np.power(_LEVELS / 255.0, gamma))


def sigmoid_lut(gain: float, cutoff: float) -> np.ndarray:
    """``255 / (1 + exp(gain · (cutoff − v/255)))``."""
    return lut_from_levels(255.0 / (1.0 + np.exp(gain * (cutoff - _LEVELS / 255.0))))


def log_lut(gain: float) -> np.ndarray:
    """``255 · gain · log2(1 + v/255)``."""
    return lut_from_levels(255.0 * gain * np.log2(1.0 + _LEVELS / 255.0))


def linear_contrast_lut(alpha: float) -> np.ndarray:
    """``127 + α · (v − 127)``."""
    return lut_from_levels(127.0 + alpha * (_LEVELS - 127.0))


def grayscale(pixels: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B) copied to three channels."""
    return cv2.cvtColor(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def equalize_histogram(pixels: np.ndarray) -> np.ndarray:
    """Histogram equalisation of the L channel in CIE Lab (colours keep their hue), like imgaug."""
    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.equalizeHist(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def shift_hue_scale_saturation(pixels: np.ndarray, hue_degrees: float, saturation_mul: float) -> np.ndarray:
    """Hue turned by ``hue_degrees`` (wrapping) and saturation multiplied, in 8-bit full-range HSV."""
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV_FULL)
    steps = int(np.floor(hue_degrees * 256.0 / 360.0 + 0.5))
    hue_lut = ((np.arange(256) + steps) % 256).astype(np.uint8)
    sat_lut = lut_from_levels(_LEVELS * saturation_mul)
    hsv[..., 0] = hue_lut[hsv[..., 0]]
    hsv[..., 1] = sat_lut[hsv[..., 1]]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


# --- filters -------------------------------------------------------------------------------------


def gaussian_blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def average_blur(pixels: np.ndarray, kernel: int) -> np.ndarray:
    return cv2.blur(pixels, (kernel, kernel), borderType=cv2.BORDER_REFLECT_101)


def motion_kernel(size: int, angle_degrees: float, direction: float) -> np.ndarray:
    """A ``size``x``size`` line kernel through the centre at ``angle`` (0° = horizontal, clockwise).

    ``direction`` in [-1, 1] tilts the weights along the line (imgaug's MotionBlur): 0 spreads them
    evenly, ±1 puts all weight at one end, so the blur trails behind the motion. Points on the line
    are splatted bilinearly; the kernel sums to 1.
    """
    kernel = np.zeros((size, size), dtype=np.float64)
    centre = (size - 1) / 2.0
    half = (size - 1) / 2.0
    t = np.linspace(-half, half, size)
    start = (direction + 1.0) / 2.0
    weights = np.linspace(start, 1.0 - start, size)
    theta = math.radians(angle_degrees)
    xs, ys = centre + t * math.cos(theta), centre + t * math.sin(theta)
    for x, y, w in zip(xs, ys, weights, strict=True):
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for dx, dy, share in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            xi, yi = x0 + dx, y0 + dy
            if 0 <= xi < size and 0 <= yi < size:
                kernel[yi, xi] += w * share
    total = kernel.sum()
    if total <= 0:  # all weight on a far end that fell outside: fall back to a plain line
        kernel[round(centre), :] = 1.0
        total = kernel.sum()
    return kernel / total


def filter_image(pixels: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(pixels, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)


def sharpen_kernel(alpha: float, lightness: float) -> np.ndarray:
    """imgaug Sharpen: ``(1 − α) · identity + α · [[-1,-1,-1],[-1,8+L,-1],[-1,-1,-1]]``."""
    identity = np.zeros((3, 3))
    identity[1, 1] = 1.0
    effect = -np.ones((3, 3))
    effect[1, 1] = 8.0 + lightness
    return (1.0 - alpha) * identity + alpha * effect


# --- geometry ------------------------------------------------------------------------------------


def flip(pixels: np.ndarray, horizontal: bool) -> np.ndarray:
    return np.ascontiguousarray(pixels[:, ::-1] if horizontal else pixels[::-1])


def crop(pixels: np.ndarray, top: int, right: int, bottom: int, left: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    return np.ascontiguousarray(pixels[top : h - bottom, left : w - right])


def pad(pixels: np.ndarray, top: int, right: int, bottom: int, left: int, value: int) -> np.ndarray:
    return cv2.copyMakeBorder(pixels, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(value,) * 3)


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bicubic when enlarging."""
    h, w = pixels.shape[:2]
    shrinking = width * height < w * h
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


def translate(pixels: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Shift by whole pixels; what leaves the canvas is lost, what enters is black."""
    h, w = pixels.shape[:2]
    out = np.zeros_like(pixels)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src = pixels[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def rotation_matrix(width: int, height: int, angle_degrees: float) -> np.ndarray:
    """2x3 affine (pixel-corner coordinates) rotating clockwise on screen about the image centre."""
    theta = math.radians(angle_degrees)
    c, s = math.cos(theta), math.sin(theta)
    return _about_centre(np.array([[c, -s], [s, c]]), width, height)


def axis_scale_matrix(width: int, height: int, sx: float, sy: float) -> np.ndarray:
    """2x3 affine scaling the axes about the image centre."""
    return _about_centre(np.array([[sx, 0.0], [0.0, sy]]), width, height)


def shear_matrix(width: int, height: int, degrees: float, horizontal: bool) -> np.ndarray:
    """2x3 affine shearing about the image centre: X moves rows sideways by tan(θ)·(y − cy)."""
    t = math.tan(math.radians(degrees))
    linear = np.array([[1.0, t], [0.0, 1.0]]) if horizontal else np.array([[1.0, 0.0], [t, 1.0]])
    return _about_centre(linear, width, height)


def _about_centre(linear: np.ndarray, width: int, height: int) -> np.ndarray:
    centre = np.array([width / 2.0, height / 2.0])
    return np.hstack([linear, (centre - linear @ centre)[:, None]])


def warp_affine(pixels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a pixel-corner-coordinate affine on the same canvas, bilinear, black outside.

    OpenCV puts pixel centres on integers, corner coordinates put them at +0.5, hence the shift.
    """
    h, w = pixels.shape[:2]
    linear, offset = matrix[:, :2], matrix[:, 2]
    centred = np.hstack([linear, (linear @ np.array([0.5, 0.5]) + offset - 0.5)[:, None]])
    return cv2.warpAffine(
        pixels, centred, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)
    )


# --- weather -------------------------------------------------------------------------------------


def smooth_field(
    rng: np.random.Generator, height: int, width: int, cell: float, octaves: int = 4
) -> np.ndarray:
    """Fractal value noise in [0, 1]: bicubic-upsampled random grids, each octave half the cell size.

    Built at a quarter of the resolution (the field is smooth) and upsampled once.
    """
    sh, sw, cell = max(2, height // 4), max(2, width // 4), cell / 4.0
    field = np.zeros((sh, sw), dtype=np.float32)
    amplitude, total = 1.0, 0.0
    for _ in range(octaves):
        gh = max(2, math.ceil(sh / cell) + 1)
        gw = max(2, math.ceil(sw / cell) + 1)
        grid = rng.random((gh, gw), dtype=np.float32)
        field += amplitude * cv2.resize(grid, (sw, sh), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= 0.5
        cell = max(2.0, cell / 2.0)
    field = cv2.resize(field / total, (width, height), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / (hi - lo) if hi > lo else np.zeros_like(field)


def blend(pixels: np.ndarray, colour: np.ndarray | float, alpha: np.ndarray) -> np.ndarray:
    """``pixels · (1 − α) + colour · α`` with a per-pixel α in [0, 1] (HxW float32), rounded to uint8.

    ``colour`` is a grey level or an HxW / HxWx3 uint8 image.
    """
    if isinstance(colour, np.ndarray):
        overlay = cv2.merge([colour] * 3) if colour.ndim == 2 else colour
    else:
        overlay = np.full_like(pixels, int(np.clip(np.floor(colour + 0.5), 0, 255)))
    weight = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    return cv2.blendLinear(pixels, overlay, 1.0 - weight, weight)


def fog(
    pixels: np.ndarray, rng: np.random.Generator, intensity: float
) -> tuple[np.ndarray, dict[str, float]]:
    """A light-grey haze whose density varies smoothly over the image (contrast drops with density)."""
    h, w = pixels.shape[:2]
    field = smooth_field(rng, h, w, cell=max(h, w) / 3.0)
    brightness = float(rng.uniform(200.0, 240.0))
    alpha = intensity * (0.55 + 0.45 * field)
    return blend(pixels, brightness, alpha), {"fog_brightness": brightness}


def clouds(
    pixels: np.ndarray, rng: np.random.Generator, intensity: float
) -> tuple[np.ndarray, dict[str, float]]:
    """Patchy bright cloud layers: thresholded fractal noise, shaded by a second field."""
    h, w = pixels.shape[:2]
    density = smooth_field(rng, h, w, cell=max(h, w) / 4.0, octaves=5)
    shade = smooth_field(rng, h, w, cell=max(h, w) / 8.0, octaves=3)
    threshold = 1.0 - 0.8 * intensity
    alpha = np.clip((density - threshold) / max(1e-3, 1.0 - threshold), 0.0, 1.0) ** 0.75
    alpha *= min(1.0, 0.4 + intensity)
    colour = np.clip(np.floor(255.0 * (0.82 + 0.18 * shade) + 0.5), 0, 255).astype(np.uint8)
    return blend(pixels, colour, alpha), {"cloud_threshold": threshold}


def _scaled(pixels: np.ndarray, levels: np.ndarray) -> np.ndarray:
    return apply_lut(pixels, lut_from_levels(levels))


def rain(
    pixels: np.ndarray, rng: np.random.Generator, intensity: float
) -> tuple[np.ndarray, dict[str, float]]:
    """Thin slanted streaks (four brightness levels), slightly blurred, over a darkened scene."""
    h, w = pixels.shape[:2]
    count = round(intensity * h * w / 250.0)
    slant = float(rng.uniform(-20.0, 20.0))
    length_scale = min(h, w) * (0.04 + 0.06 * intensity)
    lengths = rng.uniform(0.5, 1.0, count) * length_scale
    xs, ys = rng.uniform(0, w, count), rng.uniform(0, h, count)
    levels = rng.integers(0, 4, count)
    theta = math.radians(90.0 + slant)
    ends = np.stack([xs + np.cos(theta) * lengths, ys + np.sin(theta) * lengths], axis=1)
    segments = np.stack([np.stack([xs, ys], axis=1), ends], axis=1).astype(np.int32)  # (count, 2, 2)
    layer = np.zeros((h, w), dtype=np.float32)
    thickness = max(1, round(min(h, w) / 500.0))
    for level in range(4):
        chosen = list(segments[levels == level])
        if chosen:
            cv2.polylines(layer, chosen, False, 0.5 + level / 6.0, thickness, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), 0.7)
    darkened = _scaled(pixels, _LEVELS * (1.0 - 0.25 * intensity))
    return blend(darkened, 210.0, layer * 0.75), {"rain_drops": count, "rain_slant_degrees": slant}


def snow(
    pixels: np.ndarray, rng: np.random.Generator, intensity: float
) -> tuple[np.ndarray, dict[str, float]]:
    """Soft white flakes of three sizes over a slightly whitened scene.

    Flakes are drawn on a layer whose shorter side is about 320 px (1-3 px radius there) and the layer
    is upsampled, so flakes keep their look, and the cost stays low, on large images.
    """
    h, w = pixels.shape[:2]
    count = round(intensity * h * w / 300.0)
    unit = max(1.0, min(h, w) / 320.0)
    lh, lw = max(1, round(h / unit)), max(1, round(w / unit))
    sizes = rng.integers(0, 3, count)
    xs, ys = rng.integers(0, lw, count), rng.integers(0, lh, count)
    opacity = rng.uniform(0.7, 1.0, count).astype(np.float32)
    layer = np.zeros((lh, lw), dtype=np.float32)
    for size in range(3):
        chosen = sizes == size
        dots = np.zeros((lh, lw), dtype=np.float32)
        dots[ys[chosen], xs[chosen]] = opacity[chosen]
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * size + 3, 2 * size + 3))
        layer = np.maximum(layer, cv2.dilate(dots, disk))
    layer = np.minimum(1.0, 1.4 * cv2.GaussianBlur(layer, (0, 0), 0.6))
    if (lh, lw) != (h, w):
        layer = cv2.resize(layer, (w, h), interpolation=cv2.INTER_LINEAR)
    hazy = _scaled(pixels, _LEVELS + (255.0 - _LEVELS) * (0.15 * intensity))
    return blend(hazy, 255.0, layer), {"snow_flakes": count}
