"""AddNoise speed against peers on the same 640x480 photos, one thread, one run.

    python bench/bench_augmentation.py [--images 16] [--repeat 5] [--task-images 48]

1. Gaussian noise: ours vs albumentations ``GaussNoise`` (same σ; shared and per-channel noise).
2. Poisson noise: ours vs numpy ``rng.poisson`` for one image's worth of samples (and vs a plain
   numpy implementation of the same ±Poisson(λ) semantics, clipping included).
3. The whole AddNoise task end to end (the official create-augmentation.json body through the
   in-process API + runner: fetch, decode, MetaValidation, noise, JPEG encode, write, manifest).

albumentations is a bench-only peer (``pip install albumentations``), never a dependency. Numbers
are best-of-``repeat`` wall times per image; other processes on the machine make them noisy.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operators import registry  # noqa: E402
from operators.sample import Sample  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"
EXAMPLE = ROOT.parent / "shared" / "reference" / "examples" / "create-augmentation.json"
SIZE = (640, 480)


def photos(count: int) -> list[np.ndarray]:
    """``count`` real photos resized to 640x480 RGB (the same set for every contender)."""
    out = []
    for path in sorted(PHOTOS.glob("*.jpg")):
        with Image.open(path) as im:
            if min(im.size) < 200:
                continue
            out.append(np.asarray(im.convert("RGB").resize(SIZE, Image.Resampling.BILINEAR)))
        if len(out) == count:
            break
    return out


def per_image(fn: Callable[[np.ndarray], object], images: list[np.ndarray], repeat: int) -> float:
    """Best-of-``repeat`` seconds per image."""
    return race({"": fn}, images, repeat)[""]


def race(
    fns: dict[str, Callable[[np.ndarray], object]], images: list[np.ndarray], repeat: int
) -> dict[str, float]:
    """Best-of-``repeat`` seconds per image for each contender, rounds interleaved so that every
    contender sees the same background load."""
    for fn in fns.values():
        fn(images[0])  # warm-up (tables, first-call costs)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for label, fn in fns.items():
            start = time.perf_counter()
            for image in images:
                fn(image)
            best[label] = min(best[label], time.perf_counter() - start)
    return {label: seconds / len(images) for label, seconds in best.items()}


def row(label: str, seconds: float, baseline: float | None = None) -> None:
    ratio = f"{baseline / seconds:6.2f}x" if baseline else "       "
    print(f"  {label:<58} {seconds * 1e3:8.3f} ms/img {1 / seconds:9.1f} img/s {ratio}")


def ours(params: dict[str, str]) -> Callable[[np.ndarray], np.ndarray]:
    """The operator as the worker runs it: ``apply`` on a decoded sample, returning the added pixels."""
    op = registry.build("AddNoise", params)
    rng = np.random.default_rng(0)

    def run(image: np.ndarray) -> np.ndarray:
        sample = Sample(sample_id="0" * 32, source="s", name="x.jpg", pixels=image, format="JPEG")
        return op.apply(sample, rng).added[0].pixels

    return run


def bench_gauss(images: list[np.ndarray], repeat: int, sigma: float) -> None:
    import albumentations as A

    print(f"Gaussian noise, σ = {sigma} grey levels (albumentations {A.__version__})")
    for per_channel in (False, True):
        peer = A.GaussNoise(
            std_range=(sigma / 255, sigma / 255), mean_range=(0, 0), per_channel=per_channel, p=1
        )
        peer.set_random_seed(0)
        params = {"noise_type": "Gauss", "scale": str(sigma), "per_channel": str(per_channel)}
        t = race({"peer": lambda im, t=peer: t(image=im)["image"], "ours": ours(params)}, images, repeat)
        mode = "per channel" if per_channel else "shared by channels"
        row(f"albumentations GaussNoise ({mode})", t["peer"])
        row(f"dsproc AddNoise Gauss ({mode})", t["ours"], t["peer"])


def bench_poisson(images: list[np.ndarray], repeat: int, lam: float) -> None:
    print(f"Poisson noise, λ = {lam}")
    rng = np.random.default_rng(0)
    h, w = images[0].shape[:2]

    def numpy_same_semantics(im: np.ndarray) -> np.ndarray:
        noise = rng.poisson(lam, size=(h, w)) * rng.choice(np.array([-1, 1]), size=(h, w))
        return np.clip(im.astype(np.int16) + noise[..., None], 0, 255).astype(np.uint8)

    t = race(
        {
            "numpy": lambda im: rng.poisson(lam, size=(h, w)),
            "numpy_full": numpy_same_semantics,
            "ours": ours({"noise_type": "Poisson", "lam": str(lam)}),
        },
        images,
        repeat,
    )
    row("numpy rng.poisson(lam, (H, W)) (samples only)", t["numpy"])
    row("dsproc AddNoise Poisson (sample + add + clip)", t["ours"], t["numpy"])
    row("numpy ±rng.poisson + add + clip (same semantics)", t["numpy_full"])
    row("dsproc AddNoise Poisson (sample + add + clip)", t["ours"], t["numpy_full"])
    t = race(
        {
            "numpy": lambda im: rng.poisson(im * 2.0) / 2.0,
            "ours": ours({"noise_type": "Poisson", "lam": "2", "poisson_mode": "shot"}),
        },
        images,
        repeat,
    )
    row("numpy rng.poisson(pixels·2)/2 (shot noise, samples only)", t["numpy"])
    row("dsproc AddNoise Poisson poisson_mode=shot (+ round, clip)", t["ours"], t["numpy"])


def bench_task(count: int) -> None:
    """The official example body end to end through the in-process API and runner."""
    import json

    from tests.support.stack import in_process_stack

    print(f"AddNoise task end to end ({count} JPEG photos 640x480, one worker process, in-process stack)")
    images = photos(min(count, 60))
    encoded = []
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray(images[i % len(images)]).save(buf, "JPEG", quality=90)
        encoded.append(buf.getvalue())
    decode_s = per_image(
        lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), encoded, 1
    )
    with tempfile.TemporaryDirectory() as tmp, in_process_stack(Path(tmp)) as stack:
        registry.registered()  # import every operator package before timing
        for bucket in ("bench-in", "bench-out"):
            stack.store.ensure_bucket(bucket)
        for i, data in enumerate(encoded):
            stack.put_file("bench-in", f"photos/label{i % 2}/img{i:04d}.jpg", data)
        dataset = stack.create_dataset("bench", "/bench-in/photos/", work_path="/bench-out/ds/")
        body = stack.example(EXAMPLE, dataset)
        start = time.perf_counter()
        task = stack.run_task(body)
        wall = time.perf_counter() - start
        (version,) = stack.versions(task["task_id"])
        assert version.status == 2, version.error_msg
        assert version.add_sample_count == count, json.dumps(version.add_sample_count)
    print(
        f"  {count} originals + {count} added in {wall:.2f} s: {count / wall:.1f} input images/s "
        f"({2 * count / wall:.1f} files written/s); JPEG decode alone ≈ {decode_s * 1e3:.1f} ms/img"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--task-images", type=int, default=48)
    parser.add_argument("--sigma", type=float, default=10.0)
    parser.add_argument("--lam", type=float, default=2.0)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    images = photos(args.images)
    print(f"{len(images)} photos at {SIZE[0]}x{SIZE[1]}, one thread, best of {args.repeat}")
    print("ratio = speed-up of a dsproc row over the peer row above it (same images, interleaved rounds)")
    bench_gauss(images, args.repeat, args.sigma)
    bench_poisson(images, args.repeat, args.lam)
    bench_task(args.task_images)


if __name__ == "__main__":
    main()
