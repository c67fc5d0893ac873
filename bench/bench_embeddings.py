"""Embedding throughput per CPU core: the original fp32 path vs BatchNorm-folded fp32 / bf16, ± compile.

Runs the default EfficientNet-Lite0 embedder on one thread (images/s per core) over real photos
(``../shared/datasets/photos``): "baseline" is the first implementation (NCHW fp32, BatchNorm
separate, float preprocessing on the CPU); the others are ``Embedder`` with BatchNorm folded and
``channels_last``, in fp32 or bf16 autocast, eager or ``torch.compile``. Every variant's embeddings
are compared with the baseline (minimum cosine over the images; must be ≥ 0.99) and compile time is
reported (first call: cold on a fresh inductor cache, much shorter when an earlier process left its
cache in /tmp/torchinductor_$USER). The machine is shared, so numbers are noisy: variants are timed
round-robin ``--repeats`` times and the best run of each is reported, with the load average.

    python bench/bench_embeddings.py [--images 64] [--threads 1] [--repeats 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"


def load_images(n: int) -> list[np.ndarray]:
    from operators.decode import decode_image

    paths = sorted(PHOTOS.glob("*.jpg"))
    images = [np.array(decode_image(p.read_bytes(), max_side=512).pixels) for p in paths[:n]]
    while len(images) < n:
        images += images[: n - len(images)]
    return images


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from operators.embeddings.backbone import Embedder, load_default_model, preprocess, resize_batch

    images = load_images(args.images)
    start = time.perf_counter()
    resized = resize_batch(images)
    resize_rate = len(images) / (time.perf_counter() - start)
    model = load_default_model()
    load = os.getloadavg()[0]
    print(f"# {args.images} photos, batch {args.batch}, torch threads {args.threads}, load avg {load:.1f}")
    print(f"resize to 224 px (cv2, not counted below): {resize_rate:.0f} images/s")

    def baseline(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(preprocess(list(batch)))
            feats = model.extract_features(x).mean(dim=(2, 3))
            return torch.nn.functional.normalize(feats, dim=1).numpy()

    runners: dict[str, object] = {"baseline fp32": baseline}
    compile_s: dict[str, float] = {}
    variants = [("fused fp32", "fp32", False), ("fused bf16", "bf16", False)]
    if not args.no_compile:
        variants += [("fused fp32+compile", "fp32", True), ("fused bf16+compile", "bf16", True)]
    fused_model = load_default_model()
    for label, precision, compile_ in variants:
        embedder = Embedder(fused_model, "cpu", precision=precision, compile=compile_, batch_size=args.batch)
        start = time.perf_counter()
        embedder.embed_resized(resized[: args.batch])  # warm-up; compiles when asked
        if compile_:
            compile_s[label] = time.perf_counter() - start
            if not embedder.compiled:
                print(f"{label}: torch.compile failed; skipped")
                continue
        runners[label] = embedder.embed_resized
    baseline(resized[: args.batch])

    best = dict.fromkeys(runners, float("inf"))
    rows: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for label, run in runners.items():
            start = time.perf_counter()
            out = np.concatenate(
                [run(resized[i : i + args.batch]) for i in range(0, len(resized), args.batch)]
            )  # type: ignore[operator]
            best[label] = min(best[label], time.perf_counter() - start)
            rows[label] = out
    base_rate = len(resized) / best["baseline fp32"]
    for label in runners:
        rate = len(resized) / best[label]
        cos = float((rows[label] * rows["baseline fp32"]).sum(axis=1).min())
        extra = f", first call (compile) {compile_s[label]:.0f} s" if label in compile_s else ""
        print(
            f"{label:>19}: {rate / args.threads:6.1f} images/s per core ×{rate / base_rate:.2f} vs baseline, "
            f"min cosine to baseline {cos:.4f}{extra}"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
