"""Embedding throughput per CPU core: the original fp32 path vs the ``Embedder`` variants.

Runs EfficientNet-Lite0 on one thread (images/s per core) over real photos
(``../shared/datasets/photos``): "baseline" is the first implementation (NCHW fp32, BatchNorm
separate, float preprocessing on the CPU); the others are ``Embedder`` with BatchNorm folded and
``channels_last``, in fp32 or fp16/bf16 autocast, eager or ``torch.compile`` with inductor's
freezing. The variant ``get_embedder("cpu")`` uses on this machine is marked "default". Every
variant's embeddings are compared with the baseline (minimum cosine over the photos; must be
≥ 0.99) and the first call is timed (it compiles: cold with ``--cold``, which uses a fresh inductor
cache; otherwise warm when an earlier run left its cache). The machine is shared, so variants are
timed round-robin ``--repeats`` times and the best run of each is reported, in wall-clock and in
process CPU time (images per CPU-second: the per-core figure a busy neighbour disturbs least).

    python bench/bench_embeddings.py [--images 104] [--threads 1] [--repeats 5] [--batch 2]
                                     [--no-compile] [--cold] [--all] [--lanes 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
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
    parser.add_argument("--images", type=int, default=104, help="photos (104 = all of them)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=None, help="default: the CPU default (2)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--cold", action="store_true", help="compile into a fresh inductor cache")
    parser.add_argument("--all", action="store_true", help="also compiled bf16 and eager bf16/fp16")
    parser.add_argument("--lanes", type=int, default=0, help="also compare N lanes with N torch threads")
    args = parser.parse_args()
    if args.cold:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="dsproc-inductor-")

    import torch

    torch.set_num_threads(args.threads)
    from operators.embeddings.backbone import (
        Embedder,
        default_batch_size,
        default_compile,
        default_precision,
        load_default_model,
        preprocess,
        resize_batch,
    )

    batch = args.batch or default_batch_size("cpu")
    images = load_images(args.images)
    start = time.perf_counter()
    resized = resize_batch(images)
    resize_rate = len(images) / (time.perf_counter() - start)
    model = load_default_model()
    print(f"# {args.images} photos, batch {batch}, torch {torch.__version__}, threads {args.threads}", end="")
    print(f", load avg {os.getloadavg()[0]:.1f}")
    print(f"resize to 224 px (cv2, not counted below): {resize_rate:.0f} images/s")

    def baseline(chunk: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(preprocess(list(chunk)))
            feats = model.extract_features(x).mean(dim=(2, 3))
            return torch.nn.functional.normalize(feats, dim=1).numpy()

    default = (default_precision("cpu"), default_compile("cpu") and not args.no_compile)
    variants = [("fp32", False), (default[0], False)]
    if not args.no_compile:
        variants += [("fp32", True), (default[0], True)]
    if args.all:
        variants += [("bf16", False), ("fp16", False), ("bf16-mixed", False)]
        variants += [] if args.no_compile else [("bf16", True), ("bf16-mixed", True)]
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {"baseline fp32 (first version)": baseline}
    first_s: dict[str, float] = {}
    fused_model = load_default_model()
    for precision, compile_ in dict.fromkeys(variants):
        label = f"fused {precision}{' compiled+frozen' if compile_ else ' eager'}"
        label += " (default)" if (precision, compile_) == default else ""
        embedder = Embedder(fused_model, "cpu", precision=precision, compile=compile_, batch_size=batch)
        start = time.perf_counter()
        embedder.embed_resized(resized[:batch])  # warm-up; compiles when asked
        if compile_:
            first_s[label] = time.perf_counter() - start
            if not embedder.compiled:
                print(f"{label}: torch.compile failed; skipped")
                continue
        runners[label] = embedder.embed_resized
    baseline(resized[:batch])

    best = {label: [float("inf")] * 2 for label in runners}
    rows: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for label, run in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            out = np.concatenate([run(resized[i : i + batch]) for i in range(0, len(resized), batch)])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[label] = [min(best[label][0], wall), min(best[label][1], cpu)]
            rows[label] = out
    base = rows["baseline fp32 (first version)"]
    base_rate = len(resized) / best["baseline fp32 (first version)"][1]
    print(f"{'variant':>36}  img/s/core (wall)  img/CPU-s  vs baseline  min cos  first call")
    for label in runners:
        rate, cpu_rate = (len(resized) / t / args.threads for t in best[label])
        cos = float((rows[label] * base).sum(axis=1).min())
        first = f"{first_s[label]:.1f} s" if label in first_s else ""
        ratio = f"×{cpu_rate * args.threads / base_rate:.2f}"
        print(f"{label:>36}  {rate:17.1f}  {cpu_rate:9.1f}  {ratio:>11}  {cos:7.4f}  {first}")
    if args.lanes > 1:
        lanes_vs_threads(fused_model, resized, default[0], default[1], args.lanes, args.repeats)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def lanes_vs_threads(
    model: object, resized: np.ndarray, precision: str, compile_: bool, n: int, repeats: int
) -> None:
    """The default variant on ``n`` cores: ``n`` torch threads on each batch, or ``n`` lanes that
    each run whole batches on one torch thread (what ``get_embedder`` does), and batch 2 vs 8."""
    import torch

    from operators.embeddings.backbone import Embedder

    print(f"# {n} cores, {precision}{' compiled' if compile_ else ' eager'}: images/s (wall)")
    for label, threads, lanes, batch in (
        (f"{n} torch threads, batch 8", n, 1, 8),
        (f"{n} torch threads, batch 2", n, 1, 2),
        (f"{n} lanes, batch 8", 1, n, 8),
        (f"{n} lanes, batch 2 (default)", 1, n, 2),
    ):
        torch.set_num_threads(threads)
        embedder = Embedder(
            model, "cpu", precision=precision, compile=compile_, batch_size=batch, lanes=lanes
        )  # type: ignore[arg-type]
        embedder.embed_resized(resized[: batch * lanes])  # compiles for this thread count and batch
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            embedder.embed_resized(resized)
            best = min(best, time.perf_counter() - start)
        print(f"{label:>36}  {len(resized) / best:7.1f}")


if __name__ == "__main__":
    main()
