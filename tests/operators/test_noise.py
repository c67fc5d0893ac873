"""AddNoise on real photos: the noise has the distribution imgaug's augmenters define (0-255 units)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from operators import registry
from operators.augmentation import functional as F
from operators.augmentation.noise import AddNoise
from operators.decode import decode_image
from operators.errors import InvalidParamsError
from operators.sample import Sample
from tests.conftest import PHOTOS

PHOTO = PHOTOS / "mate-GreenMeadow.jpg"  # 1024x819 natural photo: mid-tones, few clipped pixels


def photo(max_side: int = 640) -> np.ndarray:
    return decode_image(PHOTO.read_bytes(), max_side=max_side).pixels


def run(params: dict[str, str], pixels: np.ndarray, seed: int = 7) -> tuple[np.ndarray, dict]:
    op = registry.build("AddNoise", params)
    sample = Sample(sample_id="ab" * 16, source="obs://b/x.jpg", name="x.jpg", pixels=pixels, format="JPEG")
    outcome = op.apply(sample, np.random.default_rng(seed))
    assert outcome.sample is sample and len(outcome.added) == 1
    added = outcome.added[0]
    return added.pixels, added.evidence[0]


def unclipped(pixels: np.ndarray, margin: float) -> np.ndarray:
    """Values whose noise cannot have been clipped: at least ``margin`` away from 0 and 255."""
    return (pixels >= margin) & (pixels <= 255 - margin)


def chi_square_p(observed_values: np.ndarray, noise: F.IntegerNoise) -> float:
    """Goodness of fit of integer samples to the noise pmf (cells with expected count < 5 pooled)."""
    counts = np.bincount(observed_values - noise.low, minlength=noise.cdf.size).astype(float)
    expected = noise.pmf * counts.sum()
    keep = expected >= 5
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] < 5:
        obs, exp = obs[:-1], exp[:-1]
        exp *= obs.sum() / exp.sum()
    return float(stats.chisquare(obs, exp).pvalue)


@pytest.mark.parametrize(("loc", "scale"), [(0.0, 1.0), (3.0, 10.0), (-5.0, 15.0)])
def test_gaussian_noise_has_requested_mean_and_std(loc: float, scale: float) -> None:
    src = photo()
    out, evidence = run(
        {"noise_type": "Gauss", "loc": str(loc), "scale": str(scale), "per_channel": "True"}, src
    )
    keep = unclipped(src, abs(loc) + 5 * scale + 1)  # P(clip) < 3e-7
    noise = out.astype(np.int16)[keep] - src.astype(np.int16)[keep]
    n = noise.size
    assert n > 300_000
    # rounding to whole grey levels adds 1/12 to the variance (Sheppard); the mean stays loc
    expected_std = math.sqrt(scale**2 + 1 / 12)
    assert abs(noise.mean() - loc) < 5 * expected_std / math.sqrt(n)
    assert abs(noise.std() - expected_std) < 5 * expected_std / math.sqrt(2 * n)
    assert chi_square_p(noise, F.gaussian_noise(loc, scale)) > 1e-3
    assert evidence["params"] == {"noise_type": "Gauss", "loc": loc, "scale": scale, "per_channel": True}


def test_gaussian_noise_is_shared_by_the_channels_unless_per_channel() -> None:
    src = photo(320)
    out, _ = run({"noise_type": "Gauss", "scale": "8"}, src)
    keep = unclipped(src, 60).all(axis=2)
    noise = out.astype(np.int16)[keep] - src.astype(np.int16)[keep]
    assert noise.std() > 7
    assert np.array_equal(noise[:, 0], noise[:, 1]) and np.array_equal(noise[:, 0], noise[:, 2])

    out, _ = run({"noise_type": "Gauss", "scale": "8", "per_channel": "True"}, src)
    noise = out.astype(np.int16)[keep] - src.astype(np.int16)[keep]
    assert np.mean(noise[:, 0] == noise[:, 1]) < 0.1  # P(equal) for two N(0, 8) roundings ≈ 0.035


def test_laplace_noise_scale_is_the_laplace_b() -> None:
    src = photo()
    out, _ = run({"noise_type": "Laplace", "loc": "2", "scale": "6", "per_channel": "True"}, src)
    keep = unclipped(src, 2 + 12 * 6)
    noise = out.astype(np.int16)[keep] - src.astype(np.int16)[keep]
    distribution = F.laplace_noise(2.0, 6.0)
    assert distribution.std() == pytest.approx(math.sqrt(2 * 36 + 1 / 12), rel=1e-3)
    assert abs(noise.mean() - 2.0) < 5 * distribution.std() / math.sqrt(noise.size)
    assert noise.std() == pytest.approx(distribution.std(), rel=0.02)
    assert np.median(np.abs(noise - 2)) == pytest.approx(6 * math.log(2), abs=0.75)  # median |X−μ| = b·ln 2
    assert chi_square_p(noise, distribution) > 1e-3


def test_additive_poisson_noise_is_signed_poisson_of_lam_independent_of_intensity() -> None:
    src = photo()
    lam = 4.0
    out, _ = run({"noise_type": "Poisson", "lam": str(lam), "per_channel": "True"}, src)
    keep = unclipped(src, 30)
    noise = out.astype(np.int16)[keep] - src.astype(np.int16)[keep]
    # imgaug's AdditivePoissonNoise: |noise| ~ Poisson(lam), sign fair, 0 with probability e^-lam
    assert np.abs(noise).mean() == pytest.approx(lam, rel=0.01)
    assert np.mean(noise == 0) == pytest.approx(math.exp(-lam), abs=0.003)
    assert abs(noise.mean()) < 5 * math.sqrt(lam + lam**2) / math.sqrt(noise.size)
    assert noise.var() == pytest.approx(lam + lam**2, rel=0.02)
    assert chi_square_p(noise, F.signed_poisson_noise(lam)) > 1e-3
    # signal-independent: dark and bright values get the same spread
    values = src[keep]
    dark, bright = noise[values < 90], noise[values > 160]
    assert dark.size > 10_000 and bright.size > 10_000
    assert dark.var() == pytest.approx(bright.var(), rel=0.06)


def test_shot_poisson_noise_variance_tracks_intensity() -> None:
    src = photo()
    photons = 2.0
    out, evidence = run({"noise_type": "Poisson", "lam": str(photons), "poisson_mode": "shot"}, src)
    keep = unclipped(src, 0) & (src < 200)  # the top bins would clip at 255
    values, noise = src[keep].astype(float), out[keep].astype(float) - src[keep].astype(float)
    centres, variances = [], []
    for lo in range(20, 200, 20):
        in_bin = (values >= lo) & (values < lo + 20)
        if in_bin.sum() > 5_000:
            centres.append(values[in_bin].mean())
            variances.append(noise[in_bin].var())
    assert len(centres) >= 5
    # Var(Poisson(v·k)/k) = v/k, plus 1/12 from rounding to grey levels
    slope, _, r, _, _ = stats.linregress(centres, variances)
    assert slope == pytest.approx(1 / photons, rel=0.08)
    assert r > 0.99
    assert abs(noise.mean()) < 0.05
    assert evidence["params"] == {
        "noise_type": "Poisson",
        "lam": photons,
        "poisson_mode": "shot",
        "per_channel": False,
    }


@pytest.mark.parametrize(("level", "photons"), [(37, 2.0), (128, 0.5), (250, 3.0)])
def test_shot_noise_follows_the_poisson_law_exactly(level: int, photons: float) -> None:
    """Flat grey images through the table sampler against scipy's Poisson pmf."""
    flat = np.full((300, 300, 3), level, np.uint8)
    out, _ = run(
        {"noise_type": "Poisson", "lam": str(photons), "poisson_mode": "shot", "per_channel": "1"}, flat
    )
    counts = np.arange(0, int(level * photons + 40 * math.sqrt(level * photons) + 50))
    expected = np.bincount(
        np.minimum(np.round(counts / photons), 255).astype(int),
        weights=stats.poisson.pmf(counts, level * photons),
        minlength=256,
    )[:256]
    expected[255] += stats.poisson.sf(counts[-1], level * photons)
    observed = np.bincount(out.ravel(), minlength=256).astype(float)
    keep = expected * out.size >= 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum()) * out.size
    assert stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > 1e-3
    # channels draw independently with per_channel, share the draw without it
    assert np.mean(out[..., 0] == out[..., 1]) < 0.5
    shared, _ = run({"noise_type": "Poisson", "lam": str(photons), "poisson_mode": "shot"}, flat)
    assert np.array_equal(shared[..., 0], shared[..., 1]) and np.array_equal(shared[..., 1], shared[..., 2])


@pytest.mark.parametrize(("noise_type", "per_channel"), [("SaltAndPepper", False), ("Impulse", True)])
def test_salt_and_pepper_replaces_fraction_p(noise_type: str, per_channel: bool) -> None:
    src = photo()
    p = 0.05
    out, evidence = run({"noise_type": noise_type, "p": str(p)}, src)
    units = src.size if per_channel else src.shape[0] * src.shape[1]
    replaced = evidence["draws"]["replaced"]
    assert abs(replaced - p * units) < 5 * math.sqrt(units * p * (1 - p))
    changed = out != src
    if not per_channel:
        pixel_changed = changed.any(axis=2)
        hit = out[pixel_changed]
        assert np.all(hit[:, 0] == hit[:, 1]) and np.all(hit[:, 1] == hit[:, 2])  # grey salt/pepper
        changed_units = int(pixel_changed.sum())
        replacement_hits_original = _p_replacement_equals(src.reshape(-1, 3), grey=True)
    else:
        changed_units = int(changed.sum())
        replacement_hits_original = _p_replacement_equals(src.reshape(-1, 1), grey=False)
    # a replaced unit looks unchanged only when the drawn value equals the original
    expected = replaced * (1 - replacement_hits_original)
    assert changed_units <= replaced
    assert abs(changed_units - expected) < 5 * math.sqrt(replaced) + 1
    # replacements are round(255·Beta(0.5, 0.5)): mostly near black or white
    new_values = out[changed] if per_channel else out[changed.any(axis=2)][:, 0]
    near_extreme = np.mean((new_values < 32) | (new_values > 223))
    assert near_extreme == pytest.approx(2 / math.pi * math.asin(math.sqrt(32 / 255)) * 2, abs=0.03)


def _p_replacement_equals(units: np.ndarray, grey: bool) -> float:
    """Chance that a round(255·Beta(.5,.5)) draw equals a random unit of the image (all channels)."""
    edges = (np.arange(257) - 0.5).clip(0, 255) / 255.0
    pmf = np.diff(stats.beta(0.5, 0.5).cdf(edges))
    if grey:
        same = units[(units[:, 0] == units[:, 1]) & (units[:, 1] == units[:, 2]), 0]
        return float(np.bincount(same, minlength=256) @ pmf / units.shape[0])
    return float(np.bincount(units[:, 0], minlength=256) @ pmf / units.shape[0])


def test_integer_noise_sampler_is_exact_where_buckets_straddle_cdf_steps() -> None:
    """σ = 60 spreads mass over ~500 values: hundreds of 16-bit buckets need the refinement draw."""
    noise = F.gaussian_noise(0.0, 60.0)
    assert np.count_nonzero(noise.table == F.AMBIGUOUS) > 300
    samples = noise.sample(np.random.default_rng(3), (2_000_000,))
    assert samples.dtype == np.int16
    assert samples.min() >= -255 and samples.max() <= 255
    assert chi_square_p(samples, noise) > 1e-3
    # the clipped tails collect the mass beyond ±255
    assert np.mean(samples == 255) == pytest.approx(stats.norm.sf(254.5, scale=60), rel=0.25)


def test_noise_is_reproducible_from_the_recorded_seed() -> None:
    src = photo(200)
    op = registry.build("AddNoise", {"noise_type": "Laplace", "scale": "5"})
    seq = np.random.SeedSequence([1234, 0xABCDEF, 2])
    sample = Sample(sample_id="cd" * 16, source="s", name="a.png", pixels=src, format="PNG")
    added = op.apply(sample, np.random.default_rng(seq)).added[0]
    evidence = added.evidence[0]
    json.dumps(evidence)
    assert evidence["seed"] == [1234, 0xABCDEF, 2]
    replay = op.apply(
        Sample(sample_id="cd" * 16, source="s", name="a.png", pixels=src, format="PNG"),
        np.random.default_rng(np.random.SeedSequence(evidence["seed"])),
    ).added[0]
    assert np.array_equal(replay.pixels, added.pixels)
    other = op.apply(
        Sample(sample_id="cd" * 16, source="s", name="a.png", pixels=src, format="PNG"),
        np.random.default_rng(99),
    ).added[0]
    assert not np.array_equal(other.pixels, added.pixels)
    assert added.name == "a_AddNoise.png" and added.format == "PNG"


def test_zero_noise_adds_nothing_and_says_why() -> None:
    src = photo(64)
    op = registry.build("AddNoise", {"noise_type": "Gauss", "loc": "0", "scale": "0"})
    sample = Sample(sample_id="ef" * 16, source="s", name="a.jpg", pixels=src, format="JPEG")
    outcome = op.apply(sample, np.random.default_rng(0))
    assert outcome.added == [] and outcome.sample is sample
    assert sample.evidence[-1]["added"] is False and "unchanged" in sample.evidence[-1]["reason"]


def test_modelarts_example_params_parse() -> None:
    params = {
        "task_type": "image_classification",
        "dataset_type": "manifest",
        "AddNoise": "1",
        "noise_type": "Gauss",
        "loc": "0",
        "scale": "1",
        "lam": "2",
        "p": "0.01",
        "total_status": "[3]",
        "filter_func": "data_augmentation",
        "do_validation": "True",
    }
    op = registry.build("AddNoise", params)
    assert isinstance(op, AddNoise) and op.params.enabled and op.params.scale == 1.0
    assert not registry.build("AddNoise", {**params, "AddNoise": "0"}).params.enabled
    for bad in ({"noise_type": "Speckle"}, {"p": "1.5"}, {"scale": "-1"}, {"lam": "x"}, {"sigma": "1"}):
        with pytest.raises(InvalidParamsError):
            registry.build("AddNoise", {**params, **bad})
    with pytest.raises(InvalidParamsError, match="lam > 0"):
        registry.build("AddNoise", {"noise_type": "Poisson", "poisson_mode": "shot", "lam": "0"})
