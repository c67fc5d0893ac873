"""Per-image features for near-duplicate search: the fast paths give what the plain ones give."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from operators.decode import decode_image
from operators.embeddings.backbone import resize_batch
from operators.selection.features import (
    EMBED_SIDE,
    _histogram,
    batch_features,
    embedding_input,
    image_features,
    measure,
    sharpness,
)
from operators.selection.layout import THUMB, luma_thumbnail, thumbnail
from tests.conftest import PHOTOS

NAMES = ["mate-Aqua", "opencv-baboon", "opencv-fruits", "opencv-sudoku", "opencv-starry_night", "mate-Dune"]


def _photo(name: str) -> np.ndarray:
    return np.array(decode_image((PHOTOS / f"{name}.jpg").read_bytes()).pixels)


def _reference_sharpness(luma: np.ndarray) -> float:
    """The float formula ``sharpness`` computes from a histogram."""
    values = luma.astype(np.float32)
    deviation = float(values.std())
    if deviation < 1e-3 or min(values.shape) < 3:
        return 0.0
    lap = np.abs(cv2.Laplacian(values, cv2.CV_32F)).ravel()
    step = max(1, lap.size // 65_536)
    cap = float(np.percentile(lap[::step], 99))
    clipped = np.minimum(lap, cap)
    return float(np.sqrt(np.mean(clipped * clipped))) / deviation


@pytest.mark.parametrize("name", NAMES)
def test_sharpness_matches_the_float_formula(name: str) -> None:
    luma = cv2.cvtColor(_photo(name), cv2.COLOR_RGB2GRAY)
    for plane in (luma, luma[7:-11, 5:-3], luma[:3, :50]):
        assert sharpness(plane) == pytest.approx(_reference_sharpness(plane), rel=1e-5)


def test_sharpness_of_flat_and_tiny_images_is_zero() -> None:
    assert sharpness(np.full((40, 40), 128, np.uint8)) == 0.0
    assert sharpness(np.arange(20, dtype=np.uint8).reshape(2, 10)) == 0.0


def test_image_features_equal_the_separate_functions() -> None:
    for name in NAMES:
        pixels = _photo(name)
        found = image_features(pixels)
        assert (found.pixel_count, found.sharpness) == measure(pixels)
        # the thumbnail is taken from the embedding input: close to one from full resolution
        assert np.array_equal(found.thumbnail, thumbnail(found.embed_input))
        assert np.abs(found.thumbnail.astype(int) - thumbnail(pixels)).mean() < 4
        assert found.embed_input.shape == (EMBED_SIDE, EMBED_SIDE, 3)
        assert np.array_equal(found.embed_input, resize_batch([pixels], EMBED_SIDE)[0])


def test_embedding_input_upscales_small_images_and_keeps_exact_sizes() -> None:
    small = _photo("opencv-fruits")[:50, :70]
    assert np.array_equal(embedding_input(small, 96), resize_batch([small], 96)[0])
    square = np.ascontiguousarray(_photo("mate-Aqua")[:64, :64])
    assert embedding_input(square, 64) is square


def test_batch_features_keep_input_order_and_are_deterministic() -> None:
    images = [_photo(n) for n in NAMES] * 2
    first, again = batch_features(images), batch_features(images[::-1])
    assert first.thumbnails.shape == (len(images), THUMB * THUMB)
    assert first.embed_inputs.shape == (len(images), EMBED_SIDE, EMBED_SIDE, 3)
    for i, pixels in enumerate(images):
        single = image_features(pixels)
        assert first.pixel_count[i] == single.pixel_count
        assert first.sharpness[i] == single.sharpness
        assert np.array_equal(first.thumbnails[i], single.thumbnail.reshape(-1))
        assert np.array_equal(first.embed_inputs[i], single.embed_input)
    assert np.array_equal(again.embed_inputs, first.embed_inputs[::-1])
    assert np.array_equal(again.sharpness, first.sharpness[::-1])


def test_batch_features_of_nothing() -> None:
    empty = batch_features([])
    assert empty.thumbnails.shape == (0, THUMB * THUMB)
    assert empty.embed_inputs.shape == (0, EMBED_SIDE, EMBED_SIDE, 3)


def test_luma_thumbnail_is_the_rgb_thumbnail() -> None:
    pixels = _photo("opencv-baboon")
    assert np.array_equal(luma_thumbnail(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)), thumbnail(pixels))


def test_laplacian_histogram_counts_are_exact_small_and_large() -> None:
    rng = np.random.default_rng(3)
    small = rng.integers(0, 1021, (300, 200)).astype(np.int16)
    np.testing.assert_array_equal(_histogram(small), np.bincount(small.ravel(), minlength=1021))
    # Over 2^24 pixels in one bin: an odd count that float32 could not hold exactly.
    large = np.zeros((4100, 4100), np.int16)
    large[7, 7] = 1020
    counts = _histogram(large)
    assert counts[0] == 4100 * 4100 - 1 and counts[1020] == 1 and counts.sum() == large.size
