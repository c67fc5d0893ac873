"""PCC at scale: N synthetic 1280-d embeddings scored in bounded memory (time and peak RSS per N).

Each size runs in a fresh process so that its peak RSS (``ru_maxrss``) is its own. The synthetic
embeddings imitate pooled CNN features: 10 classes, each a random non-negative direction plus a
shared positive component and noise, L2-normalised. Two classes are wanted (40 prototypes, 20 per
class), the other eight contaminate 20 % of the samples; 40 criticisms come from those eight. The
samples are streamed into ``RowStore`` (the operator's on-disk float16 store, 2.5 GB at 1 M) and
scored by ``operators.cleaning.functional.score`` (centring, spherical k-means with
``n_clusters`` = auto = 40, chunked scoring) — everything PCC does after the embeddings exist.
Reported: generation time, scoring time, peak RSS, and precision/recall against the synthetic truth.
The per-sample ``Verdict`` objects the worker contract asks for are measured separately
(``--verdicts``, at the smallest size) and extrapolated linearly: they are the framework's result
records, not PCC state, and the worker holds them either way.

    python bench/bench_pcc_scale.py [--sizes 100000,300000,1000000] [--dim 1280]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHUNK = 10_000


def synthetic(rng: np.random.Generator, centres: np.ndarray, labels: np.ndarray, noise: float) -> np.ndarray:
    x = centres[labels] + noise * rng.standard_normal((len(labels), centres.shape[1]), dtype=np.float32)
    x = np.maximum(x, 0.0)  # ReLU-like features
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run_one(n: int, dim: int, seed: int, verdicts: bool) -> dict[str, float]:
    """Generate ``n`` samples into a RowStore, score them, report time/RSS/quality (in this process)."""
    from operators.cleaning import functional as F

    rng = np.random.default_rng(seed)
    shared = np.abs(rng.normal(0, 1, dim)).astype(np.float32)
    centres = (np.abs(rng.normal(0, 1, (10, dim))).astype(np.float32) + shared) / 2
    noise = 0.55
    wanted_classes = np.array([1, 8])
    others = np.array([c for c in range(10) if c not in wanted_classes])
    prototypes = synthetic(rng, centres, np.repeat(wanted_classes, 20), noise)
    criticisms = synthetic(rng, centres, np.repeat(others, 5), noise)
    truth = np.empty(n, bool)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = F.RowStore(dim, Path(tmp))
        for s in range(0, n, CHUNK):
            m = min(CHUNK, n - s)
            is_wanted = rng.random(m) >= 0.2
            labels = np.where(is_wanted, rng.choice(wanted_classes, m), rng.choice(others, m))
            store.append(synthetic(rng, centres, labels, noise))
            truth[s : s + m] = is_wanted
        gen_s = time.perf_counter() - start
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out = {}
        for label, crit in (("", None), ("crit_", criticisms)):
            start = time.perf_counter()
            scores = F.score(store, prototypes, crit, F.PccConfig(), np.random.default_rng(seed))
            out[f"{label}score_s"] = time.perf_counter() - start
            tp = int((scores.keep & truth).sum())
            out[f"{label}precision"] = tp / max(int(scores.keep.sum()), 1)
            out[f"{label}recall"] = tp / int(truth.sum())
        if verdicts:
            import tracemalloc

            from operators.sample import Verdict

            tracemalloc.start()
            made = {
                f"{i:032x}": Verdict(
                    bool(scores.keep[i]),
                    {
                        "rule": F.RULES[scores.rule[i]],
                        "similarity": round(float(scores.prototype_score[i]), 4),
                        "similarity_floor": round(scores.floor, 4),
                        "prototype": f"obs://bucket/exemplars/prototypes/p{int(scores.prototype_index[i])}.jpg",
                        "prototype_distance": round(float(scores.prototype_distance[i]), 4),
                        "cluster": int(scores.cluster[i]),
                    },
                )
                for i in range(n)
            }
            out["verdict_bytes_per_sample"] = tracemalloc.get_traced_memory()[0] / len(made)
            tracemalloc.stop()
            del made
        store.close()
    out.update(
        n=n,
        dim=dim,
        gen_s=gen_s,
        rss_after_generation_mb=rss_before,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        store_gb=n * dim * 2 / 1e9,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--verdicts", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.dim, args.seed, args.verdicts)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# bench_pcc_scale: dim {args.dim}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}")
    header = f"{'N':>9} {'store':>7} {'generate':>9} {'score':>8} {'+crit':>8} {'peak RSS':>9}"
    print(f"{header}  P / R   (+crit P / R)")
    rows = []
    for i, n in enumerate(sizes):
        cmd = [sys.executable, __file__, "--child", str(n), "--dim", str(args.dim), "--seed", str(args.seed)]
        if i == 0:
            cmd.append("--verdicts")
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(
            f"{n:>9} {r['store_gb']:>5.2f}GB {r['gen_s']:>8.1f}s {r['score_s']:>7.1f}s "
            f"{r['crit_score_s']:>7.1f}s "
            f"{r['peak_rss_mb']:>7.0f}MB  {r['precision']:.3f}/{r['recall']:.3f} "
            f"({r['crit_precision']:.3f}/{r['crit_recall']:.3f})"
        )
    first = rows[0]
    if "verdict_bytes_per_sample" in first:
        per = first["verdict_bytes_per_sample"]
        print(
            f"# Verdict objects (worker result records, tracemalloc at N={first['n']}): {per:.0f} B/sample → "
            f"extrapolated {per * 1e6 / 2**20:.0f} MB at 1,000,000 (not PCC state; not in the RSS above)"
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(
            f"# scoring time ×{b['score_s'] / a['score_s']:.1f} for N ×{b['n'] / a['n']:.0f}; "
            f"peak RSS ×{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}"
        )


if __name__ == "__main__":
    main()
